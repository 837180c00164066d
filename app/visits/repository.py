"""Queries on visits: bulk insert, classification of resends, what the fold and conflicts read."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import func, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import AnyRow, insert_missing, one_of
from app.visits.models import Visit, replaced_by_correction

visit_table = Visit.__table__  # type: ignore[attr-defined]
c = visit_table.c


class StoredVisit(NamedTuple):
    content_hash: str
    household_id: uuid.UUID
    corrects: uuid.UUID | None


async def stored_and_corrected(
    session: AsyncSession,
    ids: Collection[uuid.UUID],
    new: Mapping[uuid.UUID, uuid.UUID],
) -> tuple[dict[uuid.UUID, StoredVisit], set[uuid.UUID]]:
    """One look-up for a batch: each stored visit among `ids`, and which of the `new`
    visits (id -> household) a stored visit of the same household, still in the fold,
    corrects."""
    if not ids:
        return {}, set()
    condition = one_of(session, c.id, ids)
    if new:
        condition = condition | one_of(session, c.corrects, new)
    result = await session.execute(
        select(c.id, c.content_hash, c.household_id, c.corrects, c.review_state).where(condition)
    )
    stored: dict[uuid.UUID, StoredVisit] = {}
    corrected: set[uuid.UUID] = set()
    for row in result:
        if row.id in ids:
            stored[row.id] = StoredVisit(row.content_hash, row.household_id, row.corrects)
        if (
            row.corrects is not None
            and new.get(row.corrects) == row.household_id
            and row.review_state != "rejected"
        ):
            corrected.add(row.corrects)
    return stored, corrected


async def insert_new(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> set[uuid.UUID]:
    """Insert in id order (a fixed lock order); returns the ids this call inserted."""
    return await insert_missing(session, visit_table, rows)


async def for_households(
    session: AsyncSession, household_ids: Collection[uuid.UUID]
) -> Sequence[AnyRow]:
    """Every visit of these households, for a full re-fold."""
    if not household_ids:
        return []
    result = await session.execute(
        select(visit_table).where(one_of(session, c.household_id, household_ids))
    )
    return result.all()


async def contacted_between(
    session: AsyncSession,
    household_ids: Collection[uuid.UUID],
    start: datetime,
    end: datetime,
    *,
    not_by: uuid.UUID | None = None,
) -> Sequence[AnyRow]:
    """Contacted visits still in the fold in a time range, optionally leaving out one
    worker's: the candidates a decision conflict check compares."""
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
        )
        .where(
            one_of(session, c.household_id, household_ids),
            c.outcome == "contacted",
            c.recorded_by != not_by if not_by is not None else true(),
            c.review_state != "rejected",
            ~replaced_by_correction(),
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
            .where(one_of(session, c.household_id, household_ids), c.fold_state == "pending")
            .values(fold_state="folded")
        )


async def count_pending(session: AsyncSession) -> int:
    """How many visits wait for their household (a partial index holds only those)."""
    count = await session.scalar(
        select(func.count()).select_from(visit_table).where(c.fold_state == "pending")
    )
    return int(count or 0)
