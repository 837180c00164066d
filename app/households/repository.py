"""Queries on households and their edits. Flush, never commit."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import bindparam, text, update
from sqlalchemy import select as sa_select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from app.core.db import insert_missing, one_of
from app.core.types import utcnow
from app.households.models import Household, HouseholdEdit

household_table = Household.__table__  # type: ignore[attr-defined]
edit_table = HouseholdEdit.__table__  # type: ignore[attr-defined]


async def insert_new(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> set[uuid.UUID]:
    """Create households that do not exist yet; returns the ids created here."""
    return await insert_missing(session, household_table, rows)


#: The columns the fold reads and writes.
FOLDED_COLUMNS = (
    "settlement_pcode",
    "address",
    "lat",
    "lon",
    "accuracy_m",
    "head_name",
    "phone",
    "members",
    "members_elderly",
    "members_children",
    "members_disabled",
    "notes",
    "decision",
    "reasons",
    "needs",
    "planned_departure",
    "last_outcome",
    "last_visit_at",
    "consent_to_share",
)
_h = household_table.c


async def serialize_writers(session: AsyncSession, ids: Collection[uuid.UUID]) -> None:
    """Make transactions that touch the same households, existing or not yet, run one
    after the other (PostgreSQL; SQLite already serialises writers).

    Row locks cannot cover a household that another transaction is creating and has
    not committed: a visit to it would be stored as pending while the creator's fold
    cannot see that visit, and it would never be folded. A transaction-scoped
    advisory lock per household id, taken in a fixed order, closes that gap without
    risking a deadlock.
    """
    if not ids or session.get_bind().dialect.name != "postgresql":
        return
    keys = sorted({int.from_bytes(i.bytes[:8], "big", signed=True) for i in ids})
    await session.execute(
        text(
            "SELECT count(pg_advisory_xact_lock(k)) "
            "FROM (SELECT k FROM unnest(CAST(:keys AS bigint[])) AS k ORDER BY k) AS ordered"
        ),
        {"keys": keys},
    )


async def lock_for_fold(session: AsyncSession, ids: Collection[uuid.UUID]) -> list[dict[str, Any]]:
    """The folded columns of these households, locked in id order so that two batches
    cannot deadlock on them. PostgreSQL takes row locks (FOR UPDATE); SQLite already
    serialises writers."""
    if not ids:
        return []
    columns = [
        _h.id,
        _h.version,
        _h.field_stamps,
        _h.merged_into,
        *(_h[name] for name in FOLDED_COLUMNS),
    ]
    result = await session.execute(
        sa_select(*columns)
        .where(one_of(session, _h.id, sorted(ids)))
        .order_by(_h.id)
        .with_for_update()
    )
    return [dict(row) for row in result.mappings()]


async def save_folded(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Write re-folded households back, all in one executemany."""
    if not rows:
        return
    names = ["version", "field_stamps", "updated_at", *FOLDED_COLUMNS]
    statement = (
        update(household_table)
        .where(_h.id == bindparam("household_id"))
        .values({name: bindparam(f"v_{name}") for name in names})
    )
    await session.execute(
        statement, [{"household_id": r["id"], **{f"v_{n}": r[n] for n in names}} for r in rows]
    )


async def insert_edits(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> set[uuid.UUID]:
    """Store edits not seen before (by content); returns the ids stored by this call."""
    return await insert_missing(session, edit_table, rows, conflict_columns=("content_hash",))


async def edits_for(
    session: AsyncSession, household_ids: Collection[uuid.UUID]
) -> Sequence[HouseholdEdit]:
    if not household_ids:
        return []
    result = await session.execute(
        select(HouseholdEdit).where(one_of(session, edit_table.c.household_id, household_ids))
    )
    return result.scalars().all()


async def merged_targets(
    session: AsyncSession, ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, uuid.UUID]:
    """Which of these households were merged, and into which."""
    if not ids:
        return {}
    result = await session.execute(
        sa_select(_h.id, _h.merged_into).where(
            one_of(session, _h.id, ids), _h.merged_into.is_not(None)
        )
    )
    return {row.id: uuid.UUID(str(row.merged_into)) for row in result}


async def merged_into_any(
    session: AsyncSession, targets: Collection[uuid.UUID]
) -> dict[uuid.UUID, uuid.UUID]:
    """The households merged into any of these, with the one each was merged into."""
    if not targets:
        return {}
    result = await session.execute(
        sa_select(_h.id, _h.merged_into).where(one_of(session, _h.merged_into, targets))
    )
    return {row.id: uuid.UUID(str(row.merged_into)) for row in result}


async def mark_merged(session: AsyncSession, duplicate: uuid.UUID, survivor: uuid.UUID) -> None:
    """Point the duplicate at its survivor; its version grows, so the change reaches the
    pull feed (a trigger leaves the tombstone)."""
    await session.execute(
        update(household_table)
        .where(_h.id == duplicate)
        .values(merged_into=survivor, version=_h.version + 1, updated_at=utcnow())
    )
