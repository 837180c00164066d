"""Queries on households and their edits. Flush, never commit."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.core.db import insert_ignoring_duplicates
from app.households.models import Household, HouseholdEdit

household_table = Household.__table__  # type: ignore[attr-defined]
edit_table = HouseholdEdit.__table__  # type: ignore[attr-defined]


async def existing_ids(session: AsyncSession, ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    wanted = list(ids)
    if not wanted:
        return set()
    result = await session.execute(select(Household.id).where(col(Household.id).in_(wanted)))
    return set(result.scalars())


async def add_all(session: AsyncSession, households: Sequence[Household]) -> None:
    session.add_all(households)
    await session.flush()


async def count(session: AsyncSession) -> int:
    result = await session.execute(select(func.count()).select_from(Household))
    return int(result.scalar_one())


async def insert_new(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> set[uuid.UUID]:
    """Create households that do not exist yet, in id order; returns the ids created here."""
    if not rows:
        return set()
    ordered = sorted(rows, key=lambda r: r["id"])
    statement = insert_ignoring_duplicates(session, household_table, "id").returning(
        household_table.c.id
    )
    result = await session.execute(statement, ordered)
    return set(result.scalars())


async def lock(session: AsyncSession, ids: Collection[uuid.UUID]) -> dict[uuid.UUID, Household]:
    """Load and lock households in id order, so two batches cannot deadlock on them.

    PostgreSQL takes row locks (FOR UPDATE); SQLite already serialises writers.
    """
    if not ids:
        return {}
    result = await session.execute(
        select(Household)
        .where(col(Household.id).in_(sorted(ids)))
        .order_by(col(Household.id))
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {h.id: h for h in result.scalars()}


async def insert_edits(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> set[uuid.UUID]:
    """Store edits not seen before (by content); returns the ids stored by this call."""
    if not rows:
        return set()
    ordered = sorted(rows, key=lambda r: r["id"])
    statement = insert_ignoring_duplicates(session, edit_table, "content_hash").returning(
        edit_table.c.id
    )
    result = await session.execute(statement, ordered)
    return set(result.scalars())


async def edits_for(
    session: AsyncSession, household_ids: Collection[uuid.UUID]
) -> Sequence[HouseholdEdit]:
    if not household_ids:
        return []
    result = await session.execute(
        select(HouseholdEdit).where(col(HouseholdEdit.household_id).in_(list(household_ids)))
    )
    return result.scalars().all()
