"""Queries on conflicts and their candidates. Flush, never commit."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import select
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
