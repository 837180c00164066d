"""The queries behind review: filtered, keyset-paged lists and the writes of review acts.

Lists are read with one statement each; every list has a total order (its last sort
key is an id), so a page boundary never drops or repeats a row.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

from sqlalchemy import (
    ColumnElement,
    and_,
    exists,
    false,
    func,
    literal,
    or_,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import User
from app.conflicts.models import Conflict
from app.core.db import AnyRow, casefolded, is_postgresql, one_of
from app.core.types import utcnow
from app.households.models import Household, HouseholdEdit
from app.settlements.models import SettlementAssignment
from app.visits.models import Visit, replaced_by_correction

_h = Household.__table__.c  # type: ignore[attr-defined]
_v = Visit.__table__.c  # type: ignore[attr-defined]
_c = Conflict.__table__.c  # type: ignore[attr-defined]
_e = HouseholdEdit.__table__.c  # type: ignore[attr-defined]
_a = SettlementAssignment.__table__.c  # type: ignore[attr-defined]
_u = User.__table__.c  # type: ignore[attr-defined]


def _in_scope(session: AsyncSession, column: Any, scope: frozenset[str] | None) -> Any:
    if scope is None:
        return true()
    return one_of(session, column, scope) if scope else false()


def _contains(session: AsyncSession, column: Any, code: str) -> ColumnElement[bool]:
    """A JSON list column holds `code`."""
    if is_postgresql(session):
        return column.op("@>")(func.jsonb_build_array(code))  # type: ignore[no-any-return]
    each = func.json_each(column).table_valued("value")
    return exists(select(literal(1)).select_from(each).where(each.c.value == code))


@dataclass
class HouseholdFilters:
    settlement: str | None = None
    decision: str | None = None
    need: str | None = None
    review_state: str | None = None
    has_open_conflict: bool | None = None
    not_visited_since: date | None = None
    address: str | None = None


_open_conflicts = (
    select(func.count())
    .where(_c.household_id == _h.id, _c.status == "open")
    .correlate(Household.__table__)  # type: ignore[attr-defined]
    .scalar_subquery()
)


async def households(
    session: AsyncSession,
    scope: frozenset[str] | None,
    filters: HouseholdFilters,
    after: tuple[Any, ...] | None,
    limit: int,
) -> Sequence[AnyRow]:
    """Households not merged away, in (settlement, address, id) order."""
    conditions: list[Any] = [
        _h.merged_into.is_(None),
        _in_scope(session, _h.settlement_pcode, scope),
    ]
    if filters.settlement is not None:
        conditions.append(_h.settlement_pcode == filters.settlement)
    if filters.decision == "none":
        conditions.append(_h.decision.is_(None))
    elif filters.decision is not None:
        conditions.append(_h.decision == filters.decision)
    if filters.need is not None:
        conditions.append(_contains(session, _h.needs, filters.need))
    if filters.review_state is not None:
        conditions.append(
            exists().where(_v.household_id == _h.id, _v.review_state == filters.review_state)
        )
    if filters.has_open_conflict is not None:
        has = exists().where(_c.household_id == _h.id, _c.status == "open")
        conditions.append(has if filters.has_open_conflict else ~has)
    if filters.not_visited_since is not None:
        since = datetime.combine(filters.not_visited_since, time.min, tzinfo=UTC)
        conditions.append(or_(_h.last_visit_at.is_(None), _h.last_visit_at < since))
    if filters.address:
        needle = filters.address.casefold()
        conditions.append(casefolded(session, _h.address).contains(needle, autoescape=True))
    order = (_h.settlement_pcode, _h.address, _h.id)
    if after is not None:
        conditions.append(tuple_(*order) > tuple_(*after))
    result = await session.execute(
        select(
            _h.id,
            _h.settlement_pcode,
            _h.address,
            _h.head_name,
            _h.members,
            _h.decision,
            _h.reasons,
            _h.needs,
            _h.last_outcome,
            _h.last_visit_at,
            _h.version,
            _open_conflicts.label("open_conflicts"),
        )
        .where(*conditions)
        .order_by(*order)
        .limit(limit)
    )
    return result.all()


async def household(session: AsyncSession, household_id: uuid.UUID) -> Household | None:
    return await session.get(Household, household_id, populate_existing=True)


async def merged_into(session: AsyncSession, survivor: uuid.UUID) -> list[uuid.UUID]:
    result = await session.execute(select(_h.id).where(_h.merged_into == survivor).order_by(_h.id))
    return list(result.scalars())


@dataclass
class VisitFilters:
    settlement: str | None = None
    household_id: uuid.UUID | None = None
    recorded_by: str | None = None
    review_state: str | None = None
    decision: str | None = None
    pending: bool | None = None
    visited_from: datetime | None = None
    visited_to: datetime | None = None


def _visit_in_scope(session: AsyncSession, scope: frozenset[str] | None) -> Any:
    """A folded visit is in scope through its household's settlement; a pending one (its
    household has not arrived) through the settlements its worker is assigned to."""
    if scope is None:
        return true()
    household_in = exists().where(
        _h.id == _v.household_id, _in_scope(session, _h.settlement_pcode, scope)
    )
    worker_in = exists().where(
        _a.user_id == _v.recorded_by, _in_scope(session, _a.settlement_pcode, scope)
    )
    return or_(household_in, and_(_v.fold_state == "pending", worker_in))


async def visits(
    session: AsyncSession,
    scope: frozenset[str] | None,
    filters: VisitFilters,
    after: tuple[Any, ...] | None,
    limit: int,
) -> Sequence[AnyRow]:
    """Visits, newest first ((visited_at, id) descending), with the worker's username."""
    conditions: list[Any] = [_visit_in_scope(session, scope)]
    if filters.settlement is not None:
        conditions.append(
            exists().where(_h.id == _v.household_id, _h.settlement_pcode == filters.settlement)
        )
    if filters.household_id is not None:
        conditions.append(_v.household_id == filters.household_id)
    if filters.recorded_by is not None:
        conditions.append(_u.username == filters.recorded_by)
    if filters.review_state is not None:
        conditions.append(_v.review_state == filters.review_state)
    if filters.decision is not None:
        conditions.append(_v.decision == filters.decision)
    if filters.pending is not None:
        conditions.append(_v.fold_state == ("pending" if filters.pending else "folded"))
    if filters.visited_from is not None:
        conditions.append(_v.visited_at >= filters.visited_from)
    if filters.visited_to is not None:
        conditions.append(_v.visited_at < filters.visited_to)
    if after is not None:
        conditions.append(tuple_(_v.visited_at, _v.id) < tuple_(*after))
    result = await session.execute(
        _visit_rows().where(*conditions).order_by(_v.visited_at.desc(), _v.id.desc()).limit(limit)
    )
    return result.all()


def _visit_rows() -> Any:
    corrected = replaced_by_correction()
    return select(
        Visit.__table__,  # type: ignore[attr-defined]
        _u.username.label("recorded_by_name"),
        corrected.label("is_corrected"),
    ).join(User.__table__, _u.id == _v.recorded_by)  # type: ignore[attr-defined]


async def visits_of(session: AsyncSession, household_id: uuid.UUID) -> Sequence[AnyRow]:
    result = await session.execute(
        _visit_rows().where(_v.household_id == household_id).order_by(_v.visited_at, _v.id)
    )
    return result.all()


async def visit(session: AsyncSession, visit_id: uuid.UUID) -> AnyRow | None:
    return (await session.execute(_visit_rows().where(_v.id == visit_id))).one_or_none()


async def set_review(session: AsyncSession, visit_id: uuid.UUID, state: str, note: str) -> None:
    await session.execute(
        update(Visit.__table__)  # type: ignore[attr-defined]
        .where(_v.id == visit_id)
        .values(review_state=state, review_note=note)
    )


async def move_visits(
    session: AsyncSession, source: uuid.UUID, target: uuid.UUID
) -> set[uuid.UUID]:
    """Re-point a household's visits at another; returns their ids. Their content hash is
    kept, so a phone resending one still gets `duplicate`."""
    result = await session.execute(
        update(Visit.__table__)  # type: ignore[attr-defined]
        .where(_v.household_id == source)
        .values(household_id=target)
        .returning(_v.id)
    )
    return set(result.scalars())


async def edits_of(session: AsyncSession, household_id: uuid.UUID) -> Sequence[AnyRow]:
    result = await session.execute(
        select(
            _e.id,
            _e.observed_at,
            _e.observed_at_device,
            _e.received_at,
            _e.device_id,
            _e.base_version,
            _e.fields,
            _u.username.label("recorded_by"),
        )
        .join(User.__table__, _u.id == _e.recorded_by)  # type: ignore[attr-defined]
        .where(_e.household_id == household_id)
        .order_by(_e.observed_at, _e.id)
    )
    return result.all()


async def conflicts(
    session: AsyncSession,
    scope: frozenset[str] | None,
    *,
    status: str | None,
    settlement: str | None,
    household_id: uuid.UUID | None,
    after: tuple[Any, ...] | None,
    limit: int,
) -> Sequence[Conflict]:
    """Conflicts oldest first ((opened_at, id)): the longest waiting come first."""
    conditions: list[Any] = [
        exists().where(
            _h.id == _c.household_id,
            _in_scope(session, _h.settlement_pcode, scope),
            _h.settlement_pcode == settlement if settlement is not None else true(),
        )
    ]
    if status is not None:
        conditions.append(_c.status == status)
    if household_id is not None:
        conditions.append(_c.household_id == household_id)
    if after is not None:
        conditions.append(tuple_(_c.opened_at, _c.id) > tuple_(*after))
    result = await session.execute(
        select(Conflict).where(*conditions).order_by(_c.opened_at, _c.id).limit(limit)
    )
    return result.scalars().all()


async def usernames(session: AsyncSession, ids: Collection[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not ids:
        return {}
    result = await session.execute(select(_u.id, _u.username).where(one_of(session, _u.id, ids)))
    return {row.id: row.username for row in result}


async def settlement_households(session: AsyncSession, pcode: str) -> Sequence[AnyRow]:
    """What the duplicate check compares: every household of a settlement not merged away."""
    result = await session.execute(
        select(_h.id, _h.address, _h.lat, _h.lon, _h.head_name, _h.version, _h.created_at)
        .where(_h.settlement_pcode == pcode, _h.merged_into.is_(None))
        .order_by(_h.id)
    )
    return result.all()


async def households_by_id(
    session: AsyncSession, ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, Household]:
    if not ids:
        return {}
    result = await session.execute(
        select(Household)
        .where(one_of(session, _h.id, ids))
        .execution_options(populate_existing=True)
    )
    return {h.id: h for h in result.scalars()}


async def close_conflict(
    session: AsyncSession,
    conflict_id: uuid.UUID,
    *,
    by: uuid.UUID,
    resolution: dict[str, Any],
    note: str,
) -> bool:
    """Resolve an open conflict; False when it was not open any more."""
    result = await session.execute(
        update(Conflict.__table__)  # type: ignore[attr-defined]
        .where(_c.id == conflict_id, _c.status == "open")
        .values(
            status="resolved",
            resolved_at=utcnow(),
            resolved_by=by,
            resolution=resolution,
            resolution_note=note,
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
