"""Household rules. The push path (issue: batched push sync) will build on this."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from app.households import repository
from app.households.models import Household


async def add_new(session: AsyncSession, households: Sequence[Household]) -> int:
    """Insert the households whose ids are not stored yet; returns how many were new."""
    known = await repository.existing_ids(session, (h.id for h in households))
    new = [h for h in households if h.id not in known]
    await repository.add_all(session, new)
    return len(new)


async def count(session: AsyncSession) -> int:
    return await repository.count(session)
