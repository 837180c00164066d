"""Queries on visits: bulk insert, classification of resends, what the fold and conflicts read."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import AnyRow, insert_ignoring_duplicates
from app.visits.models import Visit

visit_table = Visit.__table__  # type: ignore[attr-defined]
c = visit_table.c


async def stored(
    session: AsyncSession, ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, tuple[str, uuid.UUID]]:
    """For the ids already stored: their content hash and household."""
    if not ids:
        return {}
    result = await session.execute(
        select(c.id, c.content_hash, c.household_id).where(c.id.in_(list(ids)))
    )
    return {row.id: (row.content_hash, row.household_id) for row in result}


async def insert_new(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> set[uuid.UUID]:
    """Insert in id order (a fixed lock order); returns the ids this call inserted."""
    if not rows:
        return set()
    ordered = sorted(rows, key=lambda r: r["id"])
    statement = insert_ignoring_duplicates(session, visit_table, "id").returning(c.id)
    result = await session.execute(statement, ordered)
    return set(result.scalars())


async def corrected_ids(
    session: AsyncSession, household_ids: Collection[uuid.UUID]
) -> set[uuid.UUID]:
    """Visits of these households that a visit still in the fold replaces via `corrects`."""
    if not household_ids:
        return set()
    result = await session.execute(
        select(c.corrects).where(
            c.household_id.in_(list(household_ids)),
            c.corrects.is_not(None),
            c.review_state != "rejected",
        )
    )
    return set(result.scalars())


async def for_households(
    session: AsyncSession, household_ids: Collection[uuid.UUID]
) -> Sequence[AnyRow]:
    """Every visit of these households, for a full re-fold."""
    if not household_ids:
        return []
    result = await session.execute(
        select(visit_table).where(c.household_id.in_(list(household_ids)))
    )
    return result.all()


async def contacted_between(
    session: AsyncSession, household_ids: Collection[uuid.UUID], start: datetime, end: datetime
) -> Sequence[AnyRow]:
    """Contacted visits still in the fold, in a time range, for the conflict check."""
    if not household_ids:
        return []
    result = await session.execute(
        select(
            c.id,
            c.household_id,
            c.recorded_by,
            c.device_id,
            c.decision,
            c.visited_at,
            c.visited_at_device,
        )
        .where(
            c.household_id.in_(list(household_ids)),
            c.outcome == "contacted",
            c.review_state != "rejected",
            c.visited_at >= start,
            c.visited_at <= end,
        )
        .order_by(c.visited_at, c.id)
    )
    return result.all()


async def mark_folded(session: AsyncSession, household_ids: Collection[uuid.UUID]) -> None:
    """Pending visits whose household has arrived are folded now."""
    if household_ids:
        await session.execute(
            update(visit_table)
            .where(c.household_id.in_(list(household_ids)), c.fold_state == "pending")
            .values(fold_state="folded")
        )
