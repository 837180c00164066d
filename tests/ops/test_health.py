"""`/healthz` answers while the process lives; `/readyz` checks the database and its migration."""

from __future__ import annotations

from pathlib import Path

import httpx

from app.core.migrations import head_revision
from app.main import create_app
from tests.conftest import make_settings
from tests.databases import sqlite_url


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_on_a_migrated_database(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["migration"] == head_revision()


async def _readyz(database_url: str) -> httpx.Response:
    app = create_app(make_settings(database_url))
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await c.get("/readyz")
    finally:
        await app.state.engine.dispose()


async def test_readyz_on_an_unmigrated_database(tmp_path: Path) -> None:
    response = await _readyz(sqlite_url(tmp_path / "empty.db"))
    assert response.status_code == 503
    assert response.json()["status"] == "not_migrated"
    assert response.json()["migration"] is None


async def test_readyz_when_the_database_is_unreachable() -> None:
    response = await _readyz("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    assert response.status_code == 503
    assert response.json()["database"] == "unreachable"


async def test_healthz_does_not_need_the_database() -> None:
    app = create_app(make_settings("postgresql+asyncpg://nobody@127.0.0.1:1/none"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        response = await c.get("/healthz")
    assert response.status_code == 200
