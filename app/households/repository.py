"""Queries on households. Flush, never commit."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from app.households.models import Household


async def existing_ids(session: AsyncSession, ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    wanted = list(ids)
    if not wanted:
        return set()
    result = await session.execute(select(Household.id).where(Household.id.in_(wanted)))  # type: ignore[attr-defined]
    return set(result.scalars())


async def add_all(session: AsyncSession, households: Sequence[Household]) -> None:
    session.add_all(households)
    await session.flush()


async def count(session: AsyncSession) -> int:
    result = await session.execute(select(func.count()).select_from(Household))
    return int(result.scalar_one())
