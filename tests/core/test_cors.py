"""CORS: closed by default (no `Access-Control-*` header for any origin), open to the
origins FIELDSYNC_CORS_ALLOWED_ORIGINS lists and to no other."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import ValidationError

from app.core.config import Environment, Settings
from app.core.errors import PROBLEM_JSON
from app.main import create_app
from tests.conftest import make_settings

DASHBOARD = "https://dashboard.example.org"
STRANGER = "https://elsewhere.example.net"
#: Calls that need no database: what is checked is what wraps the app.
NO_DATABASE = "sqlite+aiosqlite:///:memory:"


async def _client(origins: list[str]) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(NO_DATABASE, cors_allowed_origins=origins))
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://fieldsync.test") as c:
            yield c
    finally:
        await app.state.engine.dispose()


@pytest.fixture
async def closed() -> AsyncIterator[httpx.AsyncClient]:
    async for c in _client([]):
        yield c


@pytest.fixture
async def opened() -> AsyncIterator[httpx.AsyncClient]:
    async for c in _client([DASHBOARD, "http://localhost:5173"]):
        yield c


async def preflight(client: httpx.AsyncClient, origin: str) -> httpx.Response:
    return await client.options(
        "/api/v1/auth/token",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


async def test_closed_by_default_for_every_origin(closed: httpx.AsyncClient) -> None:
    for origin in (DASHBOARD, STRANGER, "null"):
        before = await preflight(closed, origin)
        simple = await closed.get("/healthz", headers={"Origin": origin})
        assert before.status_code == 405
        assert before.headers["content-type"] == PROBLEM_JSON
        assert simple.status_code == 200
        assert cors_headers(before) == cors_headers(simple) == {}


async def test_a_listed_origin_may_call(opened: httpx.AsyncClient) -> None:
    before = await preflight(opened, DASHBOARD)
    assert before.status_code == 200, before.text
    assert before.headers["access-control-allow-origin"] == DASHBOARD
    assert "POST" in before.headers["access-control-allow-methods"]
    allowed = before.headers["access-control-allow-headers"].lower()
    assert {"authorization", "content-type"} <= {h.strip() for h in allowed.split(",")}
    assert "access-control-allow-credentials" not in before.headers

    simple = await opened.get("/healthz", headers={"Origin": DASHBOARD})
    assert simple.headers["access-control-allow-origin"] == DASHBOARD
    assert "Origin" in simple.headers["vary"]
    assert "Retry-After" in simple.headers["access-control-expose-headers"]


async def test_another_origin_is_refused(opened: httpx.AsyncClient) -> None:
    for origin in (STRANGER, "https://dashboard.example.org.evil.example", "null"):
        before = await preflight(opened, origin)
        assert before.status_code == 400
        assert before.headers["content-type"] == PROBLEM_JSON
        assert before.json()["detail"] == "Disallowed CORS origin."
        assert cors_headers(before) == {}

        simple = await opened.get("/healthz", headers={"Origin": origin})
        assert simple.status_code == 200
        assert "access-control-allow-origin" not in simple.headers


def test_origins_are_read_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIELDSYNC_CORS_ALLOWED_ORIGINS", f" {DASHBOARD} , http://localhost:5173,")
    settings = Settings(env=Environment.development)
    assert settings.cors_allowed_origins == [DASHBOARD, "http://localhost:5173"]


@pytest.mark.parametrize(
    "origin", ["*", f"{DASHBOARD}/", f"{DASHBOARD}/app", "dashboard.example.org", "ftp://x.org"]
)
def test_what_is_not_an_origin_is_refused(origin: str) -> None:
    with pytest.raises(ValidationError, match="cors_allowed_origins") as refused:
        Settings(env=Environment.development, cors_allowed_origins=[origin])
    assert "is not an origin" in str(refused.value)
