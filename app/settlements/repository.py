"""Queries on settlements and assignments. Flush, never commit."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.core.db import one_of
from app.settlements.models import Settlement, SettlementAssignment

_settlement = Settlement.__table__  # type: ignore[attr-defined]


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
