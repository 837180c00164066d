"""The bulk insert every push goes through, on both databases."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.conflicts.models import Conflict
from app.core.db import insert_missing
from app.core.types import utcnow
from app.households.models import Household
from tests.factories import make_settlement, make_user

household_table = Household.__table__  # type: ignore[attr-defined]
conflict_table = Conflict.__table__  # type: ignore[attr-defined]


def _household(settlement: str, created_by: uuid.UUID, **values: object) -> dict[str, object]:
    now = utcnow()
    row: dict[str, object] = {
        "id": uuid.uuid4(),
        "settlement_pcode": settlement,
        "created_by": created_by,
        "version": 0,
        "reasons": [],
        "needs": [],
        "review": {},
        "field_stamps": {},
        "address": "",
        "head_name": "",
        "phone": "",
        "notes": "",
        "created_at": now,
        "updated_at": now,
    }
    row.update(values)
    return row


async def test_inserts_only_new_rows_and_returns_their_ids(session: AsyncSession) -> None:
    settlement = (await make_settlement(session)).pcode
    user = await make_user(session)
    first = [_household(settlement, user.id, address=f"вул. Тестова, {i}") for i in range(3)]
    assert await insert_missing(session, household_table, first) == {r["id"] for r in first}

    # Two taken ids and one new one, of a different row count: only the new one goes in.
    second = [*first[:2], _household(settlement, user.id)]
    assert await insert_missing(session, household_table, second) == {second[2]["id"]}
    await session.commit()

    stored = (await session.execute(select(household_table))).mappings().all()
    assert sorted(r["address"] for r in stored) == ["", "вул. Тестова, 0", "вул. Тестова, 1",
                                                    "вул. Тестова, 2"]  # fmt: skip


@pytest.mark.parametrize("giver", ["first", "last"])
async def test_a_column_only_some_rows_give_is_kept_for_those_rows(
    session: AsyncSession, giver: str
) -> None:
    """Rows go in id order; whether the row that gives `members` sorts first or last,
    it keeps its value and the others get NULL."""
    settlement = (await make_settlement(session)).pcode
    user = await make_user(session)
    low, high = sorted([uuid.uuid4(), uuid.uuid4()])
    giving, other = (low, high) if giver == "first" else (high, low)
    rows = [
        _household(settlement, user.id, id=other),
        _household(settlement, user.id, id=giving, members=4),
    ]
    assert await insert_missing(session, household_table, rows) == {low, high}
    await session.commit()

    stored = (await session.execute(select(household_table.c.id, household_table.c.members))).all()
    assert dict(stored) == {giving: 4, other: None}


async def test_a_column_left_out_stores_its_default_or_null(session: AsyncSession) -> None:
    settlement = (await make_settlement(session)).pcode
    user = await make_user(session)
    row = _household(settlement, user.id)
    del row["created_at"]  # a column default
    assert "lat" not in row  # nullable, no default
    await insert_missing(session, household_table, [row])
    await session.commit()

    stored = (await session.execute(select(household_table))).mappings().one()
    assert stored["lat"] is None
    assert stored["decision"] is None
    assert stored["created_at"] is not None
    assert stored["field_stamps"] == {}


async def test_a_required_column_left_out_is_refused(session: AsyncSession) -> None:
    settlement = (await make_settlement(session)).pcode
    user = await make_user(session)
    row = _household(settlement, user.id)
    del row["settlement_pcode"]
    with pytest.raises((ValueError, IntegrityError), match="settlement_pcode"):
        await insert_missing(session, household_table, [row])
    await session.rollback()
    assert (await session.execute(select(household_table))).first() is None
