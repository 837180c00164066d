"""The body-size limit on every endpoint: a declared Content-Length over it is 413 before
anything is read (before signing in), a chunked body is cut off at it, and a push may
send up to FIELDSYNC_BATCH_MAX_BYTES. Limits are small here: 4 KiB, and 64 KiB for push.
"""

from __future__ import annotations

import base64
import gzip
import os
import uuid
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.types import Message, Receive, Scope, Send

from app.core.body_limit import BodySizeLimitMiddleware
from app.core.config import Settings
from app.core.errors import PROBLEM_JSON
from tests.conftest import make_settings
from tests.factories import assert_problem, audit_events
from tests.sync.helpers import ensure_settlement, household, make_phone, push

#: What is checked wraps the app, whatever its database: SQLite only.
on_sqlite = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

LIMIT = 4096
PUSH_LIMIT = 64 * 1024
PUSH = "/api/v1/sync/push"
FORM = {"content-type": "application/x-www-form-urlencoded"}
JSON = {"content-type": "application/json"}


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url, max_body_bytes=LIMIT, batch_max_bytes=PUSH_LIMIT)


def sign_in_form(size: int) -> bytes:
    """A sign-in form of exactly `size` bytes (the password pads it)."""
    head = b"grant_type=password&username=nobody&password="
    return head + b"x" * (size - len(head))


def review(size: int) -> bytes:
    head, tail = b'{"state": "flagged", "note": "', b'"}'
    return head + b"n" * (size - len(head) - len(tail)) + tail


async def chunked(body: bytes, chunk: int = 1000) -> AsyncIterator[bytes]:
    """The body sent without a Content-Length (Transfer-Encoding: chunked)."""
    for start in range(0, len(body), chunk):
        yield body[start : start + chunk]


ENDPOINTS = [
    ("/api/v1/auth/token", sign_in_form, FORM, LIMIT),
    (f"/api/v1/visits/{uuid.UUID(int=7)}/review", review, JSON, LIMIT),
    (PUSH, review, JSON, PUSH_LIMIT),  # any body: it is refused unread
]


@on_sqlite
@pytest.mark.parametrize(("path", "body", "headers", "limit"), ENDPOINTS)
async def test_a_declared_length_over_the_limit_is_refused_unread(
    client: httpx.AsyncClient,
    session: AsyncSession,
    path: str,
    body: object,
    headers: dict[str, str],
    limit: int,
) -> None:
    assert callable(body)
    response = await client.post(path, content=body(limit + 1), headers=headers)

    # 413 before anything else: no sign-in was tried, no token was asked for.
    problem = assert_problem(response, 413, f"The body is larger than the limit of {limit} bytes.")
    assert problem["instance"] == path
    assert response.request.headers["content-length"] == str(limit + 1)
    assert not await audit_events(session, "auth.login_failed")


@on_sqlite
@pytest.mark.parametrize(("path", "body", "headers", "limit"), ENDPOINTS[:2])
async def test_a_chunked_body_is_cut_off_at_the_limit(
    client: httpx.AsyncClient, path: str, body: object, headers: dict[str, str], limit: int
) -> None:
    assert callable(body)
    over = await client.post(path, content=chunked(body(limit + 1)), headers=headers)
    within = await client.post(path, content=chunked(body(limit)), headers=headers)

    assert "content-length" not in over.request.headers
    assert_problem(over, 413, f"The body is larger than the limit of {limit} bytes.")
    # At the limit, the endpoint answers as usual: a wrong sign-in, or "sign in first".
    assert within.status_code == 401, within.text


@on_sqlite
async def test_a_push_may_send_up_to_its_own_limit_but_no_more(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    settlement = await ensure_settlement(session)
    phone = await make_phone(client, session, settlements=[settlement])
    households = [household(notes="н" * 200) for _ in range(30)]
    batch = phone.batch(households=households)
    size = len(orjson.dumps(batch))
    assert LIMIT < size < PUSH_LIMIT

    pushed = await push(client, phone, batch)
    assert pushed.response.status_code == 200, pushed.response.text
    assert pushed.statuses() == ["applied"] * 30

    # Compressed, its size as sent is what counts at the door (push checks the inflated
    # size itself): a gzip body over the general limit goes through too.
    # Random text compresses little: the gzip body stays over 4 KiB.
    notes = [base64.b64encode(os.urandom(200)).decode() for _ in range(30)]
    again = phone.batch(households=[household(notes=n) for n in notes])
    compressed = gzip.compress(orjson.dumps(again))
    assert LIMIT < len(compressed) < PUSH_LIMIT
    gzipped = await client.post(
        PUSH, content=compressed, headers={**JSON, **phone.headers, "Content-Encoding": "gzip"}
    )
    assert gzipped.status_code == 200, gzipped.text

    padded = {**phone.batch(households=[household()]), "padding": "p" * PUSH_LIMIT}
    cut = await client.post(
        PUSH, content=chunked(orjson.dumps(padded), 8192), headers={**JSON, **phone.headers}
    )
    assert_problem(cut, 413, f"The body is larger than the limit of {PUSH_LIMIT} bytes.")


async def test_reading_stops_at_the_limit() -> None:
    """A body that never ends is read no further than the chunk that crosses the limit,
    and one declared too long is not read at all."""
    reads = 0
    sent: list[Message] = []

    async def endless() -> Message:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": b"x" * 1000, "more_body": True}

    async def reader(scope: Scope, receive: Receive, send: Send) -> None:
        while (await receive()).get("more_body"):
            pass
        raise AssertionError("an endless body ended")

    async def server_send(message: Message) -> None:
        sent.append(message)

    guarded = BodySizeLimitMiddleware(reader, max_bytes=LIMIT)
    scope = {"type": "http", "method": "POST", "path": "/x", "headers": []}
    await guarded(scope, endless, server_send)
    assert reads == 5  # 5000 bytes: the fifth chunk crosses 4096
    assert sent[0]["status"] == 413
    assert (b"content-type", PROBLEM_JSON.encode()) in sent[0]["headers"]

    reads, sent = 0, []
    declared = {**scope, "headers": [(b"content-length", b"4097")]}
    await guarded(declared, endless, server_send)
    assert reads == 0
    assert sent[0]["status"] == 413
