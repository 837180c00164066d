"""Queries on conflicts. Flush, never commit."""

from __future__ import annotations

import uuid
from collections.abc import Collection

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.conflicts.models import Conflict
from app.core.db import one_of


async def open_for(
    session: AsyncSession, household_ids: Collection[uuid.UUID]
) -> dict[tuple[uuid.UUID, str], Conflict]:
    """The open conflicts of these households, by (household, field)."""
    if not household_ids:
        return {}
    result = await session.execute(
        select(Conflict).where(
            one_of(session, Conflict.__table__.c.household_id, household_ids),  # type: ignore[attr-defined]
            col(Conflict.status) == "open",
        )
    )
    return {(c.household_id, c.field): c for c in result.scalars()}


def stage(session: AsyncSession, conflict: Conflict) -> None:
    """Add a new conflict to the session; the caller's next flush writes it."""
    session.add(conflict)
