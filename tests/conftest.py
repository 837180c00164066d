"""Fixtures: every data-layer test runs once on SQLite and once on PostgreSQL.

Each test gets the app wired to a migrated database and a client that calls it in
process. Tables are emptied after each test rather than rolled back: the app commits
its own transactions (the request owns the transaction), and several tests need
what it committed to be visible to other connections and processes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Environment, Settings
from app.main import create_app
from tests.databases import (
    clear_tables,
    migrated_database,
    postgres_required,
    postgres_unreachable_reason,
)

TEST_SECRET_KEY = "test-signing-key-" + "x" * 32
BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def postgres_available() -> bool:
    reason = postgres_unreachable_reason()
    if reason is None:
        return True
    if postgres_required():
        pytest.fail(f"{reason}; it is required under CI=true", pytrace=False)
    return False


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest, postgres_available: bool) -> str:
    name: str = request.param
    if name == "postgresql" and not postgres_available:
        pytest.skip(postgres_unreachable_reason() or "PostgreSQL is unreachable")
    return name


@pytest.fixture(scope="session")
def database_url(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database of the current backend, migrated to head once per test run."""
    with migrated_database(backend, tmp_path_factory.mktemp(backend)) as url:
        yield url


def make_settings(database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "env": Environment.test,
        "database_url": database_url,
        "secret_key": TEST_SECRET_KEY,
    }
    values.update(overrides)
    return Settings.model_validate(values)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    engine = application.state.engine
    try:
        yield application
    finally:
        await clear_tables(engine)
        await engine.dispose()


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://fieldsync.test") as c:
        yield c


@pytest.fixture
async def session(app: FastAPI) -> AsyncIterator[AsyncSession]:
    """A session on the app's database for arranging data; commit what the app must see."""
    async with app.state.sessionmaker() as s:
        yield s
