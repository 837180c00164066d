"""The async engine, the session factory and the request-scoped session dependency.

The request owns the transaction: `get_session` commits when the handler returns and
rolls back when it raises. Services and repositories only flush.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from functools import cache
from typing import Annotated, Any

import orjson
from fastapi import Depends, Request
from sqlalchemy import (
    JSON,
    Column,
    ColumnElement,
    Insert,
    MetaData,
    Row,
    String,
    Table,
    any_,
    bindparam,
    event,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.types import NullType
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
    # SQLite's lower() folds ASCII only; search must fold Cyrillic too (PostgreSQL's does).
    dbapi_connection.create_function("casefold", 1, _casefold, deterministic=True)


def _casefold(value: str | None) -> str | None:
    return value.casefold() if isinstance(value, str) else value


def is_postgresql(session: AsyncSession) -> bool:
    """Whether the session talks to PostgreSQL (else SQLite)."""
    return session.get_bind().dialect.name == "postgresql"


def casefolded(session: AsyncSession, column: ColumnElement[Any]) -> ColumnElement[Any]:
    """The column in lower case, whatever its alphabet, on either database."""
    if is_postgresql(session):
        return func.lower(column)
    return func.casefold(column)


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def _json_value(stored: Any) -> Any:
    """A JSON column's value back. SQLite gives a column declared JSON numeric affinity,
    so a document that is a bare number (a candidate value of `members`) comes back as
    that number rather than its text."""
    return orjson.loads(stored) if isinstance(stored, str | bytes) else stored


_JSON = {"json_serializer": _json_text, "json_deserializer": _json_value}


def create_engine(settings: DatabaseSettings) -> AsyncEngine:
    """An engine for `settings.database_url`; SQLite gets WAL mode and foreign keys.

    JSON columns are encoded and decoded with orjson: the push path reads and writes
    hundreds of them per batch.
    """
    if settings.is_sqlite:
        engine = create_async_engine(settings.database_url, pool_pre_ping=True, **_JSON)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
        **_JSON,
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


def one_of(
    session: AsyncSession, column: ColumnElement[Any], values: Iterable[Any]
) -> ColumnElement[bool]:
    """`column IN (values)`. On PostgreSQL `column = ANY(:array)`: one bound array, so the
    statement compiles once, instead of one parameter per value compiled on every call."""
    items = list(values)
    if is_postgresql(session):
        return column == any_(bindparam(None, items, type_=ARRAY(column.type)))
    return column.in_(items)


def insert_ignoring_duplicates(
    session: AsyncSession, table: Table, *conflict_columns: str
) -> Insert:
    """`INSERT ... ON CONFLICT (columns) DO NOTHING` for the session's database."""
    if is_postgresql(session):
        return pg_insert(table).on_conflict_do_nothing(index_elements=list(conflict_columns))
    return sqlite_insert(table).on_conflict_do_nothing(index_elements=list(conflict_columns))


async def insert_missing(
    session: AsyncSession,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    conflict_columns: tuple[str, ...] = ("id",),
    returning: str = "id",
) -> set[Any]:
    """Insert the rows whose `conflict_columns` values are not taken, in id order (a fixed
    lock order across transactions); returns the `returning` values of those inserted.

    On PostgreSQL the rows go in as one `INSERT ... SELECT FROM unnest(...)`, one array
    per column, whatever their number: the statement text never changes, so it is
    prepared once per connection. A multi-row VALUES statement has a text per row count,
    and those texts crowd the prepared-statement cache and are parsed again and again.
    """
    if not rows:
        return set()
    ordered = sorted(rows, key=lambda r: r["id"])
    if is_postgresql(session):
        return await _insert_unnest(session, table, ordered, conflict_columns, returning)
    # An executemany takes its columns from the first row: give every row every column,
    # or a column only some rows give would be dropped or demanded of all.
    names = [column.name for column in table.columns]
    filled = zip(*(_filled(table, name, ordered) for name in names), strict=True)
    statement = insert_ignoring_duplicates(session, table, *conflict_columns).returning(
        table.c[returning]
    )
    result = await session.execute(
        statement, [dict(zip(names, row, strict=True)) for row in filled]
    )
    return set(result.scalars())


def _pg_array_type(column: Column[Any]) -> str:
    """The PostgreSQL type of a column, for casting an array parameter to `type[]`.

    Strings are cast to text, not varchar(n), which would silently truncate: the
    assignment to the column then checks the length and fails loudly.
    """
    column_type = column.type
    if isinstance(column_type, NullType) and column.foreign_keys:
        column_type = next(iter(column.foreign_keys)).column.type
    if isinstance(column_type, String):
        return "TEXT"
    return str(column_type.compile(dialect=PGDialect()))  # type: ignore[no-untyped-call]


@cache
def _unnest_insert_sql(
    table: Table, conflict_columns: tuple[str, ...], returning: str
) -> tuple[str, list[str], frozenset[str]]:
    """The statement, its column order and its JSON columns, built once per table."""
    names = [column.name for column in table.columns]
    arrays = [f"${i}::{_pg_array_type(table.c[n])}[]" for i, n in enumerate(names, start=1)]
    sql = (
        f'INSERT INTO "{table.name}" ({", ".join(names)}) '  # noqa: S608  (names from the model)
        f"SELECT * FROM unnest({', '.join(arrays)}) "
        f"ON CONFLICT ({', '.join(conflict_columns)}) DO NOTHING RETURNING {returning}"
    )
    return sql, names, frozenset(n for n in names if isinstance(table.c[n].type, JSON))


#: A column a row must give: it has no default and is not nullable.
_REQUIRED: Any = object()


def _filled(table: Table, name: str, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
    """One column's values; a row that leaves the column out gets the column's default
    (a callable one is called for each such row), else NULL where that is allowed."""
    column = table.c[name]
    default = column.default
    if default is None:
        missing = None if column.nullable else _REQUIRED
        values = [row.get(name, missing) for row in rows]
        if missing is _REQUIRED and any(value is _REQUIRED for value in values):
            raise ValueError(f"every {table.name} row must give {name}")
        return values
    if default.is_callable:
        make = default.arg  # type: ignore[attr-defined]
        return [row[name] if name in row else make(None) for row in rows]
    return [row.get(name, default.arg) for row in rows]  # type: ignore[attr-defined]


async def _insert_unnest(
    session: AsyncSession,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    conflict_columns: tuple[str, ...],
    returning: str,
) -> set[Any]:
    """PostgreSQL: the rows as per-column arrays, on the session's own connection (inside
    its transaction), straight through asyncpg."""
    sql, names, json_columns = _unnest_insert_sql(table, conflict_columns, returning)
    values = []
    for name in names:
        column = _filled(table, name, rows)
        if name in json_columns:
            column = [orjson.dumps(value).decode() for value in column]
        values.append(column)
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    records = await driver.fetch(sql, *values)
    return {record[0] for record in records}
