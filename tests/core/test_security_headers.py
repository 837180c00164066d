"""Security headers on every response: API answers, errors (404, 405, 401, 422, 413, 500),
the docs pages with their own policy, the docs' assets, a streamed export; HSTS only when
configured; and the middleware passes a streamed body through chunk by chunk."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.types import Message, Receive, Scope, Send

from app.auth.models import Role
from app.core.config import Settings
from app.core.headers import API_CSP, SecurityHeadersMiddleware
from app.main import create_app
from tests.factories import bearer, make_settlement, make_user, tokens_for

#: What is checked wraps the app, whatever its database: SQLite only.
on_sqlite = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

COMMON = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def assert_secured(response: httpx.Response, *, api: bool = True) -> None:
    """The headers every response carries; an API answer's policy loads nothing and is
    never stored."""
    for name, value in COMMON.items():
        assert response.headers.get(name) == value, (response.request.url, name, response.headers)
    csp = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp
    assert "strict-transport-security" not in response.headers  # not configured
    if api:
        assert csp == API_CSP
        assert response.headers["cache-control"] == "no-store"


@on_sqlite
@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/healthz", 200),
        ("GET", "/openapi.json", 200),
        ("GET", "/api/v1/no-such-thing", 404),
        ("DELETE", "/api/v1/auth/token", 405),
        ("GET", "/api/v1/auth/me", 401),
        ("POST", "/api/v1/auth/refresh", 422),
        ("OPTIONS", "/api/v1/auth/token", 405),  # a preflight, CORS being closed
    ],
)
async def test_api_answers_and_errors_carry_the_headers(
    client: httpx.AsyncClient, method: str, path: str, status: int
) -> None:
    response = await client.request(method, path, json={} if method == "POST" else None)
    assert response.status_code == status, response.text
    assert_secured(response)


@on_sqlite
async def test_a_payload_too_large_and_a_500_carry_them_too(app: FastAPI) -> None:
    @app.get("/_test/boom")
    async def boom() -> None:
        raise RuntimeError("synthetic failure")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        failed = await c.get("/_test/boom")
        too_large = await c.post("/api/v1/auth/token", content=b"x" * (1024 * 1024 + 1))
    assert failed.status_code == 500
    assert too_large.status_code == 413
    assert_secured(failed)
    assert_secured(too_large)


@on_sqlite
async def test_the_docs_pages_have_their_own_policy_and_their_assets_stay_cacheable(
    client: httpx.AsyncClient,
) -> None:
    for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        page = await client.get(path)
        assert page.status_code == 200
        assert_secured(page, api=False)
        csp = page.headers["content-security-policy"]
        assert csp != API_CSP
        # Scripts from this server, the inline ones (not ReDoc's: it has none) by hash.
        scripts = re.search(r"script-src 'self'((?: 'sha256-[A-Za-z0-9+/]+=*')*);", csp)
        assert scripts is not None, csp
        assert bool(scripts.group(1)) == (path != "/redoc"), csp
        assert "http" not in csp
        assert "'unsafe-eval'" not in csp
        assert ("'unsafe-inline'" in csp) == (path == "/redoc"), csp

    asset = await client.get("/docs-assets/swagger-ui.css")
    assert asset.status_code == 200
    assert_secured(asset, api=False)
    assert "cache-control" not in asset.headers
    assert asset.headers["etag"]


@on_sqlite
async def test_a_streamed_export_carries_them(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    settlement = await make_settlement(session)
    supervisor = await make_user(session, Role.supervisor, settlements=[settlement.pcode])
    token = (await tokens_for(client, supervisor))["access_token"]

    async with client.stream(
        "GET", "/api/v1/exports/households", params={"format": "csv"}, headers=bearer(token)
    ) as response:
        body = b"".join([chunk async for chunk in response.aiter_bytes()])
    assert response.status_code == 200, body
    assert_secured(response)
    assert response.headers["content-disposition"].startswith("attachment;")
    assert body.startswith(b"household,")


@on_sqlite
async def test_hsts_only_when_configured(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"hsts_seconds": 31_536_000}))
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://t") as c:
            response = await c.get("/healthz")
    finally:
        await app.state.engine.dispose()
    assert response.headers["strict-transport-security"] == "max-age=31536000"


async def test_a_streamed_body_passes_through_chunk_by_chunk() -> None:
    """Each chunk reaches the server before the app writes the next: nothing is buffered."""
    delivered: list[Message] = []
    first_chunk_out = asyncio.Event()

    async def streaming_app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"one", "more_body": True})
        await asyncio.wait_for(first_chunk_out.wait(), timeout=5)
        await send({"type": "http.response.body", "body": b"two", "more_body": False})

    async def server_send(message: Message) -> None:
        delivered.append(message)
        if message.get("body") == b"one":
            first_chunk_out.set()

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope: dict[str, Any] = {"type": "http", "path": "/export", "headers": []}
    await SecurityHeadersMiddleware(streaming_app)(scope, receive, server_send)

    assert [m.get("body") for m in delivered] == [None, b"one", b"two"]
    headers = dict(delivered[0]["headers"])
    assert headers[b"x-content-type-options"] == b"nosniff"
    assert headers[b"cache-control"] == b"no-store"
