"""Fixtures of the tests that run real server processes on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers import ServerProcess, migrated_postgres_database, running_server


@pytest.fixture
def database(postgres_available: bool) -> Iterator[str]:
    """A PostgreSQL database of its own, migrated to head, dropped afterwards."""
    if not postgres_available:
        pytest.skip(
            "PostgreSQL is unreachable: concurrent writes from several server processes "
            "need it (SQLite serialises writers)"
        )
    with migrated_postgres_database() as url:
        yield url


@pytest.fixture
def server(database: str) -> Iterator[ServerProcess]:
    """A real uvicorn server with two worker processes on that database."""
    with running_server(database, workers=2) as started:
        yield started
