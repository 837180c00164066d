"""A client that hangs up (starlette's `ClientDisconnect`) before or during its answer is
logged at INFO, never as an unhandled error: no 500 handler, nothing raised to uvicorn
(which would log "Exception in ASGI application")."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive, Scope, Send

BEFORE = "/test/gone-before-the-answer"
DURING = "/test/gone-during-the-download"


def _add_routes(app: FastAPI) -> None:
    async def gone_before() -> None:
        raise ClientDisconnect

    async def rows() -> AsyncIterator[bytes]:
        yield b"id,decision\n"
        raise ClientDisconnect

    async def gone_during() -> StreamingResponse:
        return StreamingResponse(rows(), media_type="text/csv")

    app.add_api_route(BEFORE, gone_before)
    app.add_api_route(DURING, gone_during)


async def _get(app: FastAPI, path: str) -> list[Message]:
    """GET `path` straight through the ASGI app, as uvicorn would; the messages it sent."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"fieldsync.test")],
        "client": ("127.0.0.1", 50000),
        "server": ("fieldsync.test", 80),
    }
    requested = False
    sent: list[Message] = []

    async def receive() -> Message:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # the socket stays quiet
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    await asyncio.wait_for(app(scope, receive, send), timeout=10)
    return sent


@pytest.mark.parametrize("path", [BEFORE, DURING])
async def test_a_client_that_hangs_up_is_logged_at_info_not_as_an_error(
    app: FastAPI, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    _add_routes(app)
    caplog.set_level(logging.INFO)
    sent = await _get(app, path)  # raises if the disconnect reaches uvicorn

    statuses = [m["status"] for m in sent if m["type"] == "http.response.start"]
    assert statuses == ([] if path == BEFORE else [200]), sent
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not errors, [(r.name, r.levelname, r.getMessage()) for r in errors]
    gone = [r for r in caplog.records if r.name == "fieldsync.errors"]
    assert [(r.levelname, r.getMessage()) for r in gone] == [
        ("INFO", f"client went away during GET {path}")
    ]
    # The access line: 499 (client closed the request) when no answer began, not a 500
    # that would page someone each time a phone loses signal; the download's own status
    # when it was cut off midway.
    [access] = [r for r in caplog.records if r.name == "fieldsync.access"]
    assert access.getMessage() == f"GET {path} {499 if path == BEFORE else 200}"


async def test_a_request_left_unanswered_without_a_hang_up_is_logged_as_a_500(
    app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    """An app that returns without answering is a server bug (uvicorn answers 500), not
    a client that went away: the access line says 500, not 499."""

    async def silent(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()

    app.mount("/test/silent", silent)
    caplog.set_level(logging.INFO)
    assert await _get(app, "/test/silent/") == []
    [access] = [r for r in caplog.records if r.name == "fieldsync.access"]
    assert access.getMessage().endswith(" 500"), access.getMessage()
