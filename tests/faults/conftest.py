"""Fixtures of the fault tests: a PostgreSQL database of the test's own on the shared
server, or a PostgreSQL server of its own to stop and start (tests/private_postgres.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.databases import postgres_required
from tests.private_postgres import PrivatePostgres, unavailable_reason
from tests.servers import migrated_postgres_database


@pytest.fixture
def database(postgres_available: bool) -> Iterator[str]:
    """A PostgreSQL database of its own, migrated to head, dropped afterwards."""
    if not postgres_available:
        pytest.skip("PostgreSQL is unreachable: the fault tests run real servers on it")
    with migrated_postgres_database("fieldsync_fault") as url:
        yield url


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A started PostgreSQL server of this test's own (never the shared one), removed after."""
    reason = unavailable_reason()
    if reason is not None:
        if postgres_required():
            pytest.fail(f"{reason}; it is required under CI=true", pytrace=False)
        pytest.skip(reason)
    with PrivatePostgres() as server:
        yield server
