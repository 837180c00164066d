"""gzip request bodies on every endpoint, as docs/PROTOCOL.md promises ("request bodies
may be gzip-compressed"): a phone that compresses its token refresh must not be locked
out of syncing.

A pure ASGI middleware, inside the body-size limit (which counts the bytes as sent). A
body sent with `Content-Encoding: gzip` is read whole, inflated to at most the limit
(a gzip bomb is a 413 after inflating no more than that) and handed on as a plain body,
with `Content-Encoding` gone and `Content-Length` its inflated size. Other encodings
are a 415, a body that is not one whole gzip stream a 400; all problem+json (the
push's own reader, app/core/body.py, applies the same rules). A request
with no body is passed on whatever it says. Paths in `own_paths` read their body
themselves (a push inflates within its own limit: app/core/body.py) and are passed
through untouched.
"""

from __future__ import annotations

import zlib
from collections.abc import Collection

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.body_limit import route_path
from app.core.errors import (
    MalformedBody,
    PayloadTooLarge,
    UnsupportedEncoding,
    log_client_gone,
    problem_response,
)

IDENTITY = "identity"
GZIP = frozenset({"gzip", "x-gzip"})

#: A body with bytes after its gzip stream: refused rather than cut short.
AFTER_THE_STREAM = "The body holds data after its gzip stream; send one gzip member."


def is_gzip(headers: Headers) -> bool:
    """Whether the request body is gzip (True) or as it is (False); any other
    `Content-Encoding` is refused (415)."""
    encoding = ", ".join(headers.getlist("content-encoding")).strip().lower() or IDENTITY
    if encoding != IDENTITY and encoding not in GZIP:
        raise UnsupportedEncoding(
            f"Content-Encoding {encoding!r} is not supported; send identity or gzip."
        )
    return encoding in GZIP


def inflate(body: bytes, max_bytes: int) -> bytes:
    """A gzip body inflated, refusing (413) to inflate past `max_bytes`, and (400) a
    body that is not one whole gzip stream: truncated, or with more after its end (a
    second gzip member, or junk), which would otherwise be dropped unread."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, max_bytes + 1)
        if len(out) <= max_bytes and not inflater.unconsumed_tail:
            out += inflater.flush()
    except zlib.error:
        raise MalformedBody("The body is not valid gzip.") from None
    if len(out) > max_bytes or inflater.unconsumed_tail:
        raise PayloadTooLarge(f"The body inflates past the limit of {max_bytes} bytes.")
    if not inflater.eof:
        raise MalformedBody("The gzip body is truncated.")
    if inflater.unused_data:
        raise MalformedBody(AFTER_THE_STREAM)
    return out


class RequestDecompressionMiddleware:
    """Inflates gzip request bodies (see the module's docstring)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, own_paths: Collection[str] = ()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.own_paths = frozenset(own_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or route_path(scope) in self.own_paths:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        has_body = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
        try:
            gzipped = has_body and is_gzip(headers)
            body = await _read_all(receive) if gzipped else b""
            plain = inflate(body, self.max_bytes) if body else b""
        except (UnsupportedEncoding, MalformedBody, PayloadTooLarge) as refused:
            status, detail = refused.status_code, refused.detail
            await problem_response(status, detail, instance=route_path(scope))(scope, receive, send)
            return
        if not gzipped:
            await self.app(scope, receive, send)
            return
        if body is None:
            log_client_gone(scope)  # mid-body: no one to answer
            return

        scope["headers"] = [  # in place: the layers outside read the route from scope
            (name, value)
            for name, value in scope["headers"]
            if name.lower() not in (b"content-encoding", b"content-length", b"transfer-encoding")
        ] + [(b"content-length", str(len(plain)).encode())]
        delivered = False

        async def receive_plain() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": plain, "more_body": False}
            return await receive()  # what comes after the body: a disconnect

        await self.app(scope, receive_plain, send)


async def _read_all(receive: Receive) -> bytes | None:
    """The whole body as sent, or None if the client hung up first."""
    parts = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts)
