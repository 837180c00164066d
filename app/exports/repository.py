"""The queries behind exports: streamed rows, never a whole table in memory.

Each export reads in one transaction (REPEATABLE READ on PostgreSQL; SQLite's read
transaction is a snapshot), so the row count recorded in the audit log is the number of
rows streamed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Select, and_, false, func, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import User
from app.core.db import is_postgresql, one_of
from app.households.models import Household
from app.settlements.models import Settlement
from app.visits.models import Visit, replaced_by_correction

_h = Household.__table__.c  # type: ignore[attr-defined]
_v = Visit.__table__.c  # type: ignore[attr-defined]
_s = Settlement.__table__.c  # type: ignore[attr-defined]
_u = User.__table__.c  # type: ignore[attr-defined]

#: Rows fetched from the database at a time: memory stays flat whatever the total.
FETCH_ROWS = 2000


@dataclass(frozen=True)
class Filters:
    """What to export. Dates are whole days, `date_to` included."""

    settlement: str | None = None
    hromada: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    decision: str | None = None
    as_of: datetime | None = None


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _where_settlement(
    session: AsyncSession, scope: frozenset[str] | None, filters: Filters
) -> list[Any]:
    conditions: list[Any] = []
    if scope is not None:
        conditions.append(one_of(session, _s.pcode, scope) if scope else false())
    if filters.settlement is not None:
        conditions.append(_s.pcode == filters.settlement)
    if filters.hromada is not None:
        conditions.append(_s.hromada_pcode == filters.hromada)
    return conditions


def _in_days(column: Any, filters: Filters) -> list[Any]:
    conditions = []
    if filters.date_from is not None:
        conditions.append(column >= _start_of(filters.date_from))
    if filters.date_to is not None and filters.date_to < date.max:
        conditions.append(column < _start_of(filters.date_to + _ONE_DAY))
    return conditions


_ONE_DAY = timedelta(days=1)

SETTLEMENT_COLUMNS = (
    _s.pcode.label("settlement_pcode"),
    _s.name_uk.label("settlement_name"),
    _s.hromada_pcode,
    _s.hromada_uk.label("hromada_name"),
    _s.raion_pcode,
    _s.oblast_pcode,
)

HOUSEHOLD_COLUMNS = (
    _h.id,
    _h.address,
    _h.lat,
    _h.lon,
    _h.head_name,
    _h.phone,
    _h.members,
    _h.members_elderly,
    _h.members_children,
    _h.members_disabled,
    _h.notes,
    _h.created_at,
)
#: The state a fold of visits gives a household (as of now, or as of a time).
STATE_COLUMNS = (
    "decision",
    "reasons",
    "needs",
    "planned_departure",
    "last_outcome",
    "last_visit_at",
    "consent_to_share",
)


def _visits_known_by(as_of: datetime) -> Any:
    """Visits the server had received by `as_of` that still count: not rejected, and not
    replaced by a correction it had received by then."""
    replaced = replaced_by_correction(received_by=as_of)
    return and_(_v.received_at <= as_of, _v.review_state != "rejected", ~replaced)


def _state_as_of(as_of: datetime) -> tuple[Any, Any]:
    """Subqueries giving each household's state folded from the visits received by
    `as_of`: the latest visit (any outcome) and the latest contacted one, in fold order
    (corrected time, then device id, then visit id)."""

    def latest(*conditions: Any) -> Any:
        rank = (
            func.row_number()
            .over(
                partition_by=_v.household_id,
                order_by=(_v.visited_at.desc(), _v.device_id.desc(), _v.id.desc()),
            )
            .label("rank")
        )
        inner = (
            select(
                _v.household_id,
                _v.outcome,
                _v.visited_at,
                _v.decision,
                _v.reasons,
                _v.needs,
                _v.planned_departure,
                _v.consent_to_share,
                rank,
            )
            .where(_visits_known_by(as_of), *conditions)
            .subquery()
        )
        return select(inner).where(inner.c.rank == 1).subquery()

    return latest(), latest(_v.outcome == "contacted")


def households_query(
    session: AsyncSession,
    scope: frozenset[str] | None,
    filters: Filters,
    *,
    consenting_only: bool,
) -> Select[Any]:
    """One row per household (not merged away) in its canonical state, or in its state as
    of `filters.as_of`, with its settlement's codes and names; in id order."""
    conditions = [_h.merged_into.is_(None), *_where_settlement(session, scope, filters)]
    if filters.as_of is None:
        state = [_h[name] for name in STATE_COLUMNS]
        query = select(*HOUSEHOLD_COLUMNS, *SETTLEMENT_COLUMNS, *state).join_from(
            Household.__table__,  # type: ignore[attr-defined]
            Settlement.__table__,  # type: ignore[attr-defined]
            _h.settlement_pcode == _s.pcode,
        )
        decision, consent, visited = _h.decision, _h.consent_to_share, _h.last_visit_at
    else:
        last, contact = _state_as_of(filters.as_of)
        query = (
            select(
                *HOUSEHOLD_COLUMNS,
                *SETTLEMENT_COLUMNS,
                contact.c.decision,
                contact.c.reasons,
                contact.c.needs,
                contact.c.planned_departure,
                last.c.outcome.label("last_outcome"),
                last.c.visited_at.label("last_visit_at"),
                contact.c.consent_to_share,
            )
            .join_from(
                Household.__table__,  # type: ignore[attr-defined]
                Settlement.__table__,  # type: ignore[attr-defined]
                _h.settlement_pcode == _s.pcode,
            )
            .outerjoin(last, last.c.household_id == _h.id)
            .outerjoin(contact, contact.c.household_id == _h.id)
        )
        conditions.append(_h.created_at <= filters.as_of)
        decision, consent, visited = (
            contact.c.decision,
            contact.c.consent_to_share,
            last.c.visited_at,
        )
    if consenting_only:  # as it was then and as it is now: a withdrawal holds
        conditions += [consent.is_(True), _h.consent_to_share.is_(True)]
    if filters.decision is not None:
        conditions.append(decision == filters.decision)
    conditions += _in_days(visited, filters)
    return query.where(*conditions).order_by(_h.id)


def visits_query(
    session: AsyncSession,
    scope: frozenset[str] | None,
    filters: Filters,
    *,
    consenting_only: bool = False,
) -> Select[Any]:
    """One row per stored visit of a known household, with its settlement and worker; by
    household, then time (the order of an index: a million visits need no sort before the
    first row). `as_of` keeps the visits received by then, and whether each counts in
    the fold is as the corrections received by then had it."""
    replaced = replaced_by_correction(received_by=filters.as_of)
    conditions = [*_where_settlement(session, scope, filters), *_in_days(_v.visited_at, filters)]
    if filters.decision is not None:
        conditions.append(_v.decision == filters.decision)
    if filters.as_of is not None:
        conditions.append(_v.received_at <= filters.as_of)
    if consenting_only:
        conditions.append(_h.consent_to_share.is_(True))
    return (
        select(
            _v.id,
            _v.household_id,
            _v.visited_at,
            _v.received_at,
            _v.outcome,
            _v.decision,
            _v.reasons,
            _v.reason_note,
            _v.leave_mode,
            _v.signed_refusal,
            _v.people_present,
            _v.needs,
            _v.planned_departure,
            _v.destination,
            _v.consent_to_share,
            _v.lat,
            _v.lon,
            _v.notes,
            _v.review_state,
            _v.corrects,
            (~replaced & (_v.review_state != "rejected")).label("in_fold"),
            _u.username.label("recorded_by"),
            *SETTLEMENT_COLUMNS,
        )
        .join_from(
            Visit.__table__,  # type: ignore[attr-defined]
            Household.__table__,  # type: ignore[attr-defined]
            _h.id == _v.household_id,
        )
        .join(Settlement.__table__, _s.pcode == _h.settlement_pcode)  # type: ignore[attr-defined]
        .join(User.__table__, _u.id == _v.recorded_by)  # type: ignore[attr-defined]
        .where(*conditions)
        .order_by(_v.household_id, _v.visited_at, _v.id)
    )


def settlements_query(
    session: AsyncSession, scope: frozenset[str] | None, filters: Filters
) -> Select[Any]:
    conditions = _where_settlement(session, scope, filters)
    return (
        select(*SETTLEMENT_COLUMNS, _s.hromada_en, _s.name_en.label("settlement_name_en"))
        .where(*conditions)
        .order_by(_s.pcode)
    )


async def settlement_counts(
    session: AsyncSession, households: Select[Any], decisions: Sequence[str]
) -> dict[str, Counter[str]]:
    """Per settlement, over the rows of `households` (a `households_query`), in two
    grouped queries: `households`; `visited`; `decision_<d>` for each of `decisions`, and
    `decision_no_decision` for none; `people`, `elderly`, `children` and `disabled` (the
    sums of the household sizes); and `reason_<r>` and `need_<n>`, the households that
    name each reason and need."""
    h = households.order_by(None).subquery()
    undecided = or_(h.c.decision.is_(None), h.c.decision.in_(["", "no_decision"]))
    sums = {
        "people": h.c.members,
        "elderly": h.c.members_elderly,
        "children": h.c.members_children,
        "disabled": h.c.members_disabled,
    }
    totals = select(
        h.c.settlement_pcode,
        func.count().label("households"),
        func.count(h.c.last_visit_at).label("visited"),
        *(func.count().filter(h.c.decision == d).label(f"decision_{d}") for d in decisions),
        func.count().filter(undecided).label("decision_no_decision"),
        *(func.coalesce(func.sum(column), 0).label(name) for name, column in sums.items()),
    ).group_by(h.c.settlement_pcode)
    counts: dict[str, Counter[str]] = {}
    for row in (await session.execute(totals)).mappings():
        counts[row["settlement_pcode"]] = Counter(
            {name: int(value) for name, value in row.items() if name != "settlement_pcode"}
        )
    json_items = func.jsonb_array_elements_text if is_postgresql(session) else func.json_each
    for prefix, column in (("reason", h.c.reasons), ("need", h.c.needs)):
        items = json_items(column).table_valued("value")
        naming = (
            select(h.c.settlement_pcode, items.c.value, func.count(func.distinct(h.c.id)))
            .select_from(h)
            .join(items, true())
            .group_by(h.c.settlement_pcode, items.c.value)
        )
        for pcode, value, households_naming in await session.execute(naming):
            counts[pcode][f"{prefix}_{value}"] = int(households_naming)
    return counts


async def count(session: AsyncSession, query: Select[Any]) -> int:
    total = await session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    return int(total or 0)


async def stream(session: AsyncSession, query: Select[Any]) -> AsyncIterator[dict[str, Any]]:
    """The query's rows as dicts, fetched a few thousand at a time."""
    result = await session.stream(query.execution_options(yield_per=FETCH_ROWS))
    async for partition in result.mappings().partitions():
        for row in partition:
            yield dict(row)


#: Chunks of COPY's output held between the database and the client: the copy waits
#: while the client is slower (memory stays flat).
COPY_QUEUE_CHUNKS = 16


async def copy_csv(session: AsyncSession, query: Select[Any]) -> AsyncGenerator[bytes, None]:
    """`COPY (query) TO STDOUT (FORMAT csv)` in the session's transaction, as it comes.

    The query's values are rendered inline (COPY takes no parameters): callers pass
    only checked values (see sql_csv.py). If the stream is left before the copy ends
    (the client went away), the copy is cancelled and the connection, whose protocol
    state is then unknown, is thrown away rather than reused.
    """
    connection = await session.connection()
    sql = str(query.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True}))
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
    room = asyncio.Semaphore(COPY_QUEUE_CHUNKS)

    async def keep(chunk: bytes) -> None:
        await room.acquire()
        chunks.put_nowait(chunk)

    async def copy() -> None:
        try:
            await driver.copy_from_query(sql, output=keep, format="csv")
        finally:
            chunks.put_nowait(None)  # the end, or the copy's error: `await task` tells

    task = asyncio.create_task(copy())
    try:
        while (chunk := await chunks.get()) is not None:
            room.release()
            yield chunk
        await task  # the copy's error, if it failed
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await connection.invalidate()


async def begin_snapshot(session: AsyncSession) -> None:
    """Make every read of this session see one snapshot.

    PostgreSQL: REPEATABLE READ. SQLite: the driver starts no transaction for reads, so
    each statement would see the data as it is then; an explicit BEGIN makes the first
    read's snapshot hold until the session ends (WAL mode: writers are not blocked).
    """
    if is_postgresql(session):
        connection = await session.connection(
            execution_options={"isolation_level": "REPEATABLE READ"}
        )
        # Compiling a plan to machine code costs a quarter second before the first row,
        # for a scan whose time goes to the client anyway.
        await connection.exec_driver_sql("SET LOCAL jit = off")
        # Floats written as text by the database (sql_csv.py): shortest exact form.
        await connection.exec_driver_sql("SET LOCAL extra_float_digits = 1")
    else:
        await (await session.connection()).exec_driver_sql("BEGIN")


async def centroids(
    session: AsyncSession, scope: frozenset[str] | None, at_least: int
) -> dict[str, tuple[float, float]]:
    """Each settlement's centroid, the mean of its households' locations rounded to 0.01°
    (about a kilometre), where at least `at_least` households are located: a centroid of
    one or two houses would point at them."""
    conditions: list[Any] = [_h.lat.is_not(None), _h.lon.is_not(None), _h.merged_into.is_(None)]
    if scope is not None:
        conditions.append(one_of(session, _h.settlement_pcode, scope) if scope else false())
    result = await session.execute(
        select(_h.settlement_pcode, func.avg(_h.lat), func.avg(_h.lon), func.count())
        .where(*conditions)
        .group_by(_h.settlement_pcode)
    )
    return {
        pcode: (round(float(lat), 2), round(float(lon), 2))
        for pcode, lat, lon, located in result
        if located >= at_least
    }
