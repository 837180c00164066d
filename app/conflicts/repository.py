"""Queries on conflicts and their candidates. Flush, never commit."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.conflicts.models import Conflict, ConflictCandidate
from app.core.db import insert_missing, one_of

conflict_table = Conflict.__table__  # type: ignore[attr-defined]
candidate_table = ConflictCandidate.__table__  # type: ignore[attr-defined]


async def open_ids(
    session: AsyncSession, household_ids: Collection[uuid.UUID]
) -> dict[tuple[uuid.UUID, str], uuid.UUID]:
    """The open conflicts of these households, by (household, field)."""
    if not household_ids:
        return {}
    c = conflict_table.c
    result = await session.execute(
        select(c.id, c.household_id, c.field).where(
            one_of(session, c.household_id, household_ids), c.status == "open"
        )
    )
    return {(row.household_id, row.field): row.id for row in result}


async def insert_conflicts(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Open new conflicts (fresh ids: none is skipped)."""
    await insert_missing(session, conflict_table, rows)


async def insert_candidates(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Add candidates; one already listed on its conflict (same item) is skipped."""
    unique = ("conflict_id", "item_id")
    await insert_missing(session, candidate_table, rows, conflict_columns=unique)


async def resolutions_for(
    session: AsyncSession, household_ids: Collection[uuid.UUID]
) -> Sequence[Any]:
    """The resolved conflicts of these households that set a value: supervisors' acts,
    which the fold counts as observations."""
    if not household_ids:
        return []
    c = conflict_table.c
    result = await session.execute(
        select(c.id, c.household_id, c.field, c.resolution, c.resolved_at, c.resolved_by).where(
            one_of(session, c.household_id, household_ids), c.status == "resolved"
        )
    )
    return [row for row in result if isinstance(row.resolution, dict) and "value" in row.resolution]


async def get(
    session: AsyncSession, conflict_id: uuid.UUID, *, lock: bool = False
) -> Conflict | None:
    statement = (
        select(Conflict)
        .where(conflict_table.c.id == conflict_id)
        .execution_options(populate_existing=True)
    )
    if lock:
        statement = statement.with_for_update()
    return (await session.execute(statement)).scalar_one_or_none()


async def candidates_of(
    session: AsyncSession, conflict_ids: Collection[uuid.UUID]
) -> Sequence[ConflictCandidate]:
    if not conflict_ids:
        return []
    c = candidate_table.c
    result = await session.execute(
        select(ConflictCandidate)
        .where(one_of(session, c.conflict_id, conflict_ids))
        .order_by(c.recorded_at, c.item_id)
    )
    return result.scalars().all()


async def of_households(
    session: AsyncSession, household_ids: Collection[uuid.UUID]
) -> Sequence[Conflict]:
    """Every conflict, open or resolved, of these households, oldest first."""
    if not household_ids:
        return []
    c = conflict_table.c
    result = await session.execute(
        select(Conflict)
        .where(one_of(session, c.household_id, household_ids))
        .order_by(c.opened_at, c.id)
    )
    return result.scalars().all()


async def move_candidates(session: AsyncSession, source: uuid.UUID, target: uuid.UUID) -> None:
    """Copy a conflict's candidates onto another (those it lists already are skipped)."""
    rows = [
        {**candidate.model_dump(), "id": uuid.uuid4(), "conflict_id": target}
        for candidate in await candidates_of(session, [source])
    ]
    await insert_candidates(session, rows)


async def rehome(
    session: AsyncSession, conflict_ids: Collection[uuid.UUID], household_id: uuid.UUID
) -> None:
    """Re-point conflicts at another household (a merge's survivor)."""
    if conflict_ids:
        await session.execute(
            update(conflict_table)
            .where(one_of(session, conflict_table.c.id, conflict_ids))
            .values(household_id=household_id)
        )
