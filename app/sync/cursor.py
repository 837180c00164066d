"""Pull cursors: where a phone stands in the feed, signed so that it cannot be forged.

A cursor is `base64url(JSON).base64url(tag)`, the tag the first 16 bytes of an
HMAC-SHA256 of the JSON under a key derived from the server's secret: it survives
restarts, and any change to it is a 400. It names the account and role it was issued to,
the settlements it covers, and the feed position of each stream (app/sync/feed.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from app.auth.models import Role
from app.core.config import Settings
from app.core.errors import BadRequest, FieldError

#: A place in the feed: (transaction id, sequence number).
Key = tuple[int, int]
START: Key = (0, 0)
ALL = "*"
#: A cursor carries its settlements' P-codes, about 20 characters each: this holds some
#: 1,600 of them. Beyond it the cursor cannot be one this server issued.
MAX_LENGTH = 32_768


@dataclass
class Stream:
    """Where a cursor stands (`at`, the last feed key handed out) for some settlements
    (`pcodes`; None for all of them)."""

    at: Key
    pcodes: frozenset[str] | None


@dataclass
class Cursor:
    user_id: uuid.UUID
    role: Role
    main: Stream
    #: Settlements added since the main stream started, caught up to `main.at`.
    catchup: Stream | None = None
    #: Issued with `has_more`: the next page continues a pull already begun.
    more: bool = False

    def held(self) -> frozenset[str] | None:
        if self.main.pcodes is None:
            return None
        extra = self.catchup.pcodes if self.catchup and self.catchup.pcodes else frozenset()
        return self.main.pcodes | extra


def _key(settings: Settings) -> bytes:
    return hmac.new(
        settings.secret_key.get_secret_value().encode(), b"fieldsync pull cursor v1", "sha256"
    ).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def _stream_doc(stream: Stream) -> dict[str, Any]:
    return {"at": list(stream.at), "p": ALL if stream.pcodes is None else sorted(stream.pcodes)}


def encode(settings: Settings, cursor: Cursor) -> str:
    document: dict[str, Any] = {
        "v": 1,
        "u": cursor.user_id.hex,
        "r": cursor.role.value,
        "m": _stream_doc(cursor.main),
    }
    if cursor.catchup is not None:
        document["c"] = _stream_doc(cursor.catchup)
    if cursor.more:
        document["more"] = True
    payload = orjson.dumps(document)
    tag = hmac.new(_key(settings), payload, hashlib.sha256).digest()[:16]
    return f"{_b64(payload)}.{_b64(tag)}"


def _bad_cursor(problem: str) -> BadRequest:
    return BadRequest(
        "The cursor is not one this server issued to you. Keep the cursor exactly as "
        "the last pull returned it, or pull without a cursor to start again.",
        errors=[FieldError(field="cursor", code="invalid", message=problem)],
    )


def _read_stream(document: Any) -> Stream:
    at, pcodes = document["at"], document["p"]
    if not (isinstance(at, list) and len(at) == 2 and all(type(n) is int for n in at)):
        raise ValueError("position")
    if pcodes != ALL and not (isinstance(pcodes, list) and all(isinstance(p, str) for p in pcodes)):
        raise ValueError("settlements")
    return Stream((at[0], at[1]), None if pcodes == ALL else frozenset(pcodes))


def decode(settings: Settings, value: str, user_id: uuid.UUID) -> Cursor:
    """The cursor, checked: signed by this server, issued to this account, well formed."""
    if len(value) > MAX_LENGTH:
        raise _bad_cursor("is far longer than any cursor this server issues")
    try:
        payload_text, tag_text = value.split(".")
        payload, tag = _unb64(payload_text), _unb64(tag_text)
    except ValueError:
        raise _bad_cursor("is not in the form this server issues") from None
    expected = hmac.new(_key(settings), payload, hashlib.sha256).digest()[:16]
    if not hmac.compare_digest(tag, expected):
        raise _bad_cursor("has been altered or was signed by another server")
    try:
        document = orjson.loads(payload)
        if document["v"] != 1:
            raise ValueError("version")
        owner = uuid.UUID(hex=document["u"])
        role = Role(document["r"])
        main = _read_stream(document["m"])
        catchup = _read_stream(document["c"]) if "c" in document else None
        more = document.get("more", False)
        if type(more) is not bool:
            raise ValueError("more")
    except (ValueError, KeyError, TypeError):
        raise _bad_cursor("is signed but cannot be read") from None
    if owner != user_id:
        raise _bad_cursor("was issued to another account")
    return Cursor(owner, role, main, catchup, more)
