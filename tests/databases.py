"""Test databases: a migrated SQLite file and a migrated PostgreSQL database per test run.

PostgreSQL is required under CI=true (or FIELDSYNC_REQUIRE_POSTGRES=1): an unreachable
server fails the run there. Elsewhere its tests skip and say why.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.db import metadata
from app.core.migrations import upgrade_to_head

PG_ADMIN_DSN = os.environ.get("FIELDSYNC_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def postgres_required() -> bool:
    return os.environ.get("CI", "").lower() == "true" or os.environ.get(
        "FIELDSYNC_REQUIRE_POSTGRES", ""
    ) in {"1", "true"}


def run_blocking(function: object, *args: object) -> None:
    """Run blocking setup (Alembic calls asyncio.run) in a thread, clear of any event loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(function, *args).result()  # type: ignore[arg-type]


async def _pg_admin(sql: str) -> None:
    connection = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def postgres_unreachable_reason() -> str | None:
    try:
        asyncio.run(_pg_admin("SELECT 1"))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"PostgreSQL at {PG_ADMIN_DSN} is unreachable ({type(exc).__name__}: {exc})"
    return None


def _async_url(dsn: str, database: str) -> str:
    base = dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{database}"


@contextmanager
def empty_postgres_database(prefix: str = "fieldsync_test") -> Iterator[str]:
    """A new, empty PostgreSQL database, dropped afterwards; yields its async URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield _async_url(PG_ADMIN_DSN, name)
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


@contextmanager
def migrated_database(backend: str, tmp_dir: Path) -> Iterator[str]:
    """A database of `backend` migrated to head; yields its async URL."""
    if backend == "sqlite":
        url = sqlite_url(tmp_dir / f"fieldsync-{uuid.uuid4().hex[:8]}.db")
        run_blocking(upgrade_to_head, url)
        yield url
        return
    with empty_postgres_database() as url:
        run_blocking(upgrade_to_head, url)
        yield url


async def clear_tables(engine: AsyncEngine) -> None:
    """Empty every table, so each test starts from the migrated, empty schema (with the
    feed state row the migration adds)."""
    tables = [t.name for t in reversed(metadata.sorted_tables)]
    async with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            quoted = ", ".join(f'"{t}"' for t in tables)
            await connection.execute(text(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE"))
        else:
            # Deleting households files tombstones (a trigger): empty those afterwards.
            tables.remove("tombstone")
            tables.insert(tables.index("settlement"), "tombstone")
            for table in tables:
                await connection.execute(text(f'DELETE FROM "{table}"'))  # noqa: S608
        # The feed's one row, as the migration left it (its counters start again).
        await connection.execute(
            text(
                "INSERT INTO feed_state (id, pruned_txid, pruned_seq, last_seq) VALUES (1, 0, 0, 0)"
            )
        )
