"""Request bodies may be gzip on every endpoint (docs/PROTOCOL.md), not only on a push:
a phone that compresses its token refresh gets its tokens. A gzip bomb is a 413 after
inflating at most the body limit, a body that is not gzip a 400, another encoding a
415 (tests/test_openapi.py checks these on every operation that takes a body).
"""

from __future__ import annotations

import gzip
import logging
import uuid
from urllib.parse import urlencode

import httpx
import orjson
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col
from starlette.types import Message, Receive, Scope, Send

from app.auth.models import Role
from app.core.body_encoding import AFTER_THE_STREAM, RequestDecompressionMiddleware
from app.core.config import Settings
from app.visits.models import Visit
from tests.conftest import make_settings
from tests.factories import PASSWORD, assert_problem, bearer, make_user, read_fresh, tokens_for
from tests.sync.helpers import ensure_settlement, household, make_phone, push, visit

LIMIT = 4096
GZIP = {"content-encoding": "gzip"}
JSON = {"content-type": "application/json"}


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url, max_body_bytes=LIMIT)


async def test_a_phone_refreshes_and_signs_in_with_gzip_bodies(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session, Role.field_worker)
    device = uuid.uuid4()
    form = urlencode({"grant_type": "password", "username": user.username, "password": PASSWORD})
    signed_in = await client.post(
        "/api/v1/auth/token",
        content=gzip.compress(f"{form}&client_id={device}".encode()),
        headers={**GZIP, "content-type": "application/x-www-form-urlencoded"},
    )
    assert signed_in.status_code == 200, signed_in.text
    refresh = {"refresh_token": signed_in.json()["refresh_token"]}
    renewed = await client.post(
        "/api/v1/auth/refresh",
        content=gzip.compress(orjson.dumps(refresh)),
        headers={**GZIP, **JSON},
    )
    assert renewed.status_code == 200, renewed.text
    assert renewed.json()["refresh_token"] != refresh["refresh_token"]


async def test_a_review_note_sent_gzip_is_stored_exactly(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    pcode = await ensure_settlement(session)
    phone = await make_phone(client, session, settlements=[pcode])
    h = household()
    v = visit(h["id"])
    await push(client, phone, phone.batch(households=[h], visits=[v]))
    supervisor = await make_user(session, Role.supervisor)
    token = (await tokens_for(client, supervisor))["access_token"]
    note = "Перевірено на місці: «так»"
    response = await client.post(
        f"/api/v1/visits/{v['id']}/review",
        content=gzip.compress(orjson.dumps({"state": "flagged", "note": note})),
        headers={**bearer(token), **GZIP, **JSON},
    )
    assert response.status_code == 200, response.text
    [stored] = await read_fresh(session, select(Visit).where(col(Visit.id) == uuid.UUID(v["id"])))
    assert (stored.review_state, stored.review_note) == ("flagged", note)


async def test_a_gzip_bomb_is_413_and_a_broken_gzip_400(client: httpx.AsyncClient) -> None:
    bomb = gzip.compress(b'{"refresh_token": "' + b"0" * 3_000_000 + b'"}')
    assert len(bomb) < LIMIT  # it passes the limit on the bytes as sent
    response = await client.post("/api/v1/auth/refresh", content=bomb, headers={**GZIP, **JSON})
    assert_problem(response, 413, f"The body inflates past the limit of {LIMIT} bytes.")
    truncated = gzip.compress(b'{"refresh_token": "abc"}')[:-6]
    response = await client.post(
        "/api/v1/auth/refresh", content=truncated, headers={**GZIP, **JSON}
    )
    assert_problem(response, 400, "The gzip body is truncated.")
    for tail in (gzip.compress(b'"}'), b"junk"):  # more after the stream: not dropped
        response = await client.post(
            "/api/v1/auth/refresh",
            content=gzip.compress(b'{"refresh_token": "abc') + tail,
            headers={**GZIP, **JSON},
        )
        assert_problem(response, 400, AFTER_THE_STREAM)
    response = await client.post(
        "/api/v1/auth/refresh", content=b"{}", headers={"content-encoding": "deflate", **JSON}
    )
    assert_problem(
        response, 415, "Content-Encoding 'deflate' is not supported; send identity or gzip."
    )


async def _echo(scope: Scope, receive: Receive, send: Send) -> None:
    """An app that answers with the body and headers it was given."""
    message = await receive()
    headers = {k.decode(): v.decode() for k, v in scope["headers"]}
    body = orjson.dumps({"body": message["body"].hex(), "headers": headers})
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def _call(
    middleware: RequestDecompressionMiddleware, path: str, messages: list[Message]
) -> list[Message]:
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [(b"content-encoding", b"gzip"), (b"content-length", b"99")],
    }
    sent: list[Message] = []

    async def receive() -> Message:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await middleware(scope, receive, send)
    return sent


@pytest.mark.parametrize("size", [LIMIT, LIMIT + 1])
async def test_a_body_inflates_to_the_limit_and_not_a_byte_more(size: int) -> None:
    middleware = RequestDecompressionMiddleware(_echo, max_bytes=LIMIT)
    body = gzip.compress(b"a" * size)
    halves: list[Message] = [
        {"type": "http.request", "body": body[:10], "more_body": True},
        {"type": "http.request", "body": body[10:], "more_body": False},
    ]
    sent = await _call(middleware, "/api/v1/auth/refresh", halves)
    assert sent[0]["status"] == (200 if size == LIMIT else 413)
    if size == LIMIT:
        echoed = orjson.loads(sent[1]["body"])
        assert bytes.fromhex(echoed["body"]) == b"a" * LIMIT
        assert "content-encoding" not in echoed["headers"]
        assert echoed["headers"]["content-length"] == str(LIMIT)


async def test_the_push_path_and_a_client_gone_mid_body_are_left_alone() -> None:
    middleware = RequestDecompressionMiddleware(
        _echo, max_bytes=LIMIT, own_paths=["/api/v1/sync/push"]
    )
    compressed = gzip.compress(b"batch")
    pushed = await _call(
        middleware,
        "/api/v1/sync/push",
        [{"type": "http.request", "body": compressed, "more_body": False}],
    )
    echoed = orjson.loads(pushed[1]["body"])
    assert bytes.fromhex(echoed["body"]) == compressed
    assert echoed["headers"]["content-encoding"] == "gzip"  # the push inflates it itself
    gone = await _call(
        middleware,
        "/api/v1/auth/refresh",
        [{"type": "http.request", "body": compressed[:5], "more_body": True}],
    )
    assert gone == []  # nothing sent to a client that is gone, and nothing raised


async def test_a_request_without_a_body_is_passed_on_whatever_its_encoding(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/api/v1/codes", headers={"content-encoding": "br"})
    assert response.status_code == 200, response.text


async def test_the_access_log_names_the_route_of_a_gzip_request(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fieldsync.access")
    await client.post(
        "/api/v1/auth/refresh",
        content=gzip.compress(b'{"refresh_token": "not-a-token"}'),
        headers={**GZIP, **JSON},
    )
    [access] = [r for r in caplog.records if r.name == "fieldsync.access"]
    assert access.getMessage() == "POST /api/v1/auth/refresh 401"
