"""Queries on settlements and assignments. Flush, never commit."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, TableValuedAlias, case, delete, distinct, func, true
from sqlalchemy import select as sa_select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.conflicts.models import Conflict
from app.core.db import is_postgresql, one_of
from app.households.models import Household
from app.settlements.models import Settlement, SettlementAssignment

_settlement = Settlement.__table__  # type: ignore[attr-defined]
_household = Household.__table__  # type: ignore[attr-defined]
_conflict = Conflict.__table__  # type: ignore[attr-defined]


async def existing_pcodes(session: AsyncSession, pcodes: Iterable[str]) -> set[str]:
    wanted = list(set(pcodes))
    if not wanted:
        return set()
    result = await session.execute(
        select(Settlement.pcode).where(one_of(session, _settlement.c.pcode, wanted))
    )
    return set(result.scalars())


async def upsert_settlements(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> int:
    """Insert new settlements and update the names and codes of known ones."""
    result = await session.execute(
        select(Settlement).where(col(Settlement.pcode).in_([r["pcode"] for r in rows]))
    )
    known = {settlement.pcode: settlement for settlement in result.scalars()}
    for row in rows:
        settlement = known.get(row["pcode"])
        if settlement is None:
            session.add(Settlement(**row))
            continue
        for key, value in row.items():
            setattr(settlement, key, value)
    await session.flush()
    return len(rows)


async def assigned_pcodes(session: AsyncSession, user_id: uuid.UUID) -> list[str]:
    result = await session.execute(
        select(SettlementAssignment.settlement_pcode)
        .where(col(SettlementAssignment.user_id) == user_id)
        .order_by(col(SettlementAssignment.settlement_pcode))
    )
    return list(result.scalars())


async def all_assignments(session: AsyncSession) -> dict[uuid.UUID, list[str]]:
    """Every user's assigned P-codes, in one query."""
    result = await session.execute(
        select(SettlementAssignment.user_id, SettlementAssignment.settlement_pcode).order_by(
            col(SettlementAssignment.settlement_pcode)
        )
    )
    grouped: dict[uuid.UUID, list[str]] = {}
    for user_id, pcode in result.all():
        grouped.setdefault(user_id, []).append(pcode)
    return grouped


async def add_assignments(session: AsyncSession, user_id: uuid.UUID, pcodes: Iterable[str]) -> None:
    for pcode in pcodes:
        session.add(SettlementAssignment(user_id=user_id, settlement_pcode=pcode))
    await session.flush()


async def remove_assignments(
    session: AsyncSession, user_id: uuid.UUID, pcodes: Iterable[str]
) -> None:
    await session.execute(
        delete(SettlementAssignment).where(
            col(SettlementAssignment.user_id) == user_id,
            col(SettlementAssignment.settlement_pcode).in_(list(pcodes)),
        )
    )


async def all_pcodes(session: AsyncSession) -> set[str]:
    return set((await session.execute(select(Settlement.pcode))).scalars())


# --- Progress: aggregate counts over households, per settlement ----------------------
#
# `pcodes` is the caller's scope: None for every settlement. Each function below is one
# aggregate query, whatever the number of settlements.


async def settlements_in(session: AsyncSession, pcodes: Collection[str] | None) -> list[Settlement]:
    """The settlements with these P-codes (all when None), by P-code."""
    statement = select(Settlement).order_by(col(Settlement.pcode))
    if pcodes is not None:
        statement = statement.where(one_of(session, _settlement.c.pcode, pcodes))
    return list((await session.execute(statement)).scalars())


@dataclass(frozen=True, slots=True)
class HouseholdTally:
    """Counts over one settlement's households that are not merged away."""

    households: int = 0
    visited: int = 0
    leave: int = 0
    stay: int = 0
    undecided: int = 0
    no_decision: int = 0
    last_visit: datetime | None = None


def _current_households(
    session: AsyncSession, pcodes: Collection[str] | None
) -> list[ColumnElement[bool]]:
    """Households not merged into another, in these settlements."""
    h = _household.c
    where: list[ColumnElement[bool]] = [h.merged_into.is_(None)]
    if pcodes is not None:
        where.append(one_of(session, h.settlement_pcode, pcodes))
    return where


def _count_where(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.count(case((condition, 1)))


async def household_tallies(
    session: AsyncSession, pcodes: Collection[str] | None
) -> dict[str, HouseholdTally]:
    """Households, visited ones, decisions and the last visit, per settlement."""
    h = _household.c
    result = await session.execute(
        sa_select(
            h.settlement_pcode,
            func.count().label("households"),
            func.count(h.last_visit_at).label("visited"),
            _count_where(h.decision == "leave").label("leave"),
            _count_where(h.decision == "stay").label("stay"),
            _count_where(h.decision == "undecided").label("undecided"),
            _count_where(h.decision.is_(None)).label("no_decision"),
            func.max(h.last_visit_at).label("last_visit"),
        )
        .where(*_current_households(session, pcodes))
        .group_by(h.settlement_pcode)
    )
    return {
        row.settlement_pcode: HouseholdTally(
            households=row.households,
            visited=row.visited,
            leave=row.leave,
            stay=row.stay,
            undecided=row.undecided,
            no_decision=row.no_decision,
            last_visit=row.last_visit,
        )
        for row in result
    }


def _elements(session: AsyncSession, column: Any) -> TableValuedAlias:
    """The text elements of a JSON list column, as a table with one `value` column: JSONB
    on PostgreSQL, JSON text on SQLite. Joined to its row's table, one row per element."""
    if is_postgresql(session):
        return func.jsonb_array_elements_text(column).table_valued("value").render_derived()
    return func.json_each(column).table_valued("value")


async def households_with_any(
    session: AsyncSession, pcodes: Collection[str] | None, column: str, codes: Collection[str]
) -> dict[str, int]:
    """Per settlement, the households whose JSON list `column` holds any of `codes`
    (a household that holds several counts once)."""
    h = _household.c
    element = _elements(session, h[column])
    result = await session.execute(
        sa_select(h.settlement_pcode, func.count(distinct(h.id)))
        .select_from(_household)
        .join(element, true())
        .where(*_current_households(session, pcodes), element.c.value.in_(list(codes)))
        .group_by(h.settlement_pcode)
    )
    return dict(result.all())


async def households_per_code(session: AsyncSession, pcode: str, column: str) -> dict[str, int]:
    """In one settlement, how many households hold each code of their JSON list `column`."""
    h = _household.c
    element = _elements(session, h[column])
    result = await session.execute(
        sa_select(element.c.value, func.count(distinct(h.id)))
        .select_from(_household)
        .join(element, true())
        .where(*_current_households(session, [pcode]))
        .group_by(element.c.value)
    )
    return dict(result.all())


async def open_conflicts(session: AsyncSession, pcodes: Collection[str] | None) -> dict[str, int]:
    """Per settlement, the open conflicts over its households (merged-away ones included:
    an open conflict is work left whatever became of its household)."""
    h, c = _household.c, _conflict.c
    statement = (
        sa_select(h.settlement_pcode, func.count(c.id))
        .select_from(_conflict)
        .join(_household, h.id == c.household_id)
        .where(c.status == "open")
        .group_by(h.settlement_pcode)
    )
    if pcodes is not None:
        statement = statement.where(one_of(session, h.settlement_pcode, pcodes))
    return dict((await session.execute(statement)).all())
