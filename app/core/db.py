"""The async engine, the session factory and the request-scoped session dependency.

The request owns the transaction: `get_session` commits when the handler returns and
rolls back when it raises. Services and repositories only flush.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import Insert, MetaData, Row, Table, event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlmodel import SQLModel

from app.core.config import DatabaseSettings
from app.core.errors import DomainError

# Every table model shares this metadata; its naming convention (set in app/core/__init__.py)
# makes constraint names explicit and the same on SQLite and PostgreSQL.
metadata: MetaData = SQLModel.metadata

#: A result row of any width.
AnyRow = Row[*tuple[Any, ...]]


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_engine(settings: DatabaseSettings) -> AsyncEngine:
    """An engine for `settings.database_url`; SQLite gets WAL mode and foreign keys."""
    if settings.is_sqlite:
        engine = create_async_engine(settings.database_url, pool_pre_ping=True)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session and one transaction per request: commit on success, roll back on error.

    Used with `scope="function"`, so the commit happens before the response is sent:
    a client is never told something was stored that a failed commit then lost.
    """
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with sessionmaker() as session:
        try:
            yield session
        except DomainError as exc:
            await (session.commit() if exc.keep_changes else session.rollback())
            raise
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


def insert_ignoring_duplicates(
    session: AsyncSession, table: Table, *conflict_columns: str
) -> Insert:
    """`INSERT ... ON CONFLICT (columns) DO NOTHING` for the session's database."""
    if session.get_bind().dialect.name == "postgresql":
        return pg_insert(table).on_conflict_do_nothing(index_elements=list(conflict_columns))
    return sqlite_insert(table).on_conflict_do_nothing(index_elements=list(conflict_columns))
