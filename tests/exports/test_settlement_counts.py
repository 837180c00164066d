"""The settlement summary's counts, grouped in SQL, equal a plain count of the household
rows the summary covers, on both databases."""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from app.exports import repository
from app.exports.repository import Filters
from app.exports.service import DECISION_CELLS
from app.households.models import Household
from tests.sync.helpers import ensure_settlement, household, make_phone, push, visit

A, B = "UA6308013001", "UA6308013002"

#: Stored values, one dict a household (the rest as pushed): every way a count can go.
HOUSEHOLDS: list[dict[str, Any]] = [
    {"decision": "leave", "reasons": ["no_transport", "no_transport"], "needs": ["transport"]},
    {"decision": "stay", "reasons": ["attachment_to_home", "fear_of_conscription"]},
    {"decision": None, "members": None, "members_elderly": None, "last_visit_at": None},
    {"decision": "", "reasons": [], "needs": [], "members": 7, "members_disabled": 2},
    {"decision": "undecided", "needs": ["transport", "medical_evacuation"], "members": 0},
    {"decision": "stay", "reasons": ["attachment_to_home"], "members_children": 3},
]


def reference_counts(rows: Sequence[Mapping[str, Any]]) -> dict[str, Counter[str]]:
    """The counts the summary shows, one household row at a time."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for row in rows:
        count = counts[row["settlement_pcode"]]
        count["households"] += 1
        count["visited"] += row["last_visit_at"] is not None
        count[f"decision_{row['decision'] or 'no_decision'}"] += 1
        count["people"] += row["members"] or 0
        count["elderly"] += row["members_elderly"] or 0
        count["children"] += row["members_children"] or 0
        count["disabled"] += row["members_disabled"] or 0
        for reason in set(row["reasons"] or []):
            count[f"reason_{reason}"] += 1
        for need in set(row["needs"] or []):
            count[f"need_{need}"] += 1
    return counts


async def test_grouped_counts_equal_a_count_of_the_rows(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    for pcode in (A, B):
        await ensure_settlement(session, pcode)
    phone = await make_phone(client, session, settlements=[A, B])
    ids = [uuid.uuid4() for _ in HOUSEHOLDS]
    batch = phone.batch(
        households=[household(hid, settlement=(A, B)[i % 2]) for i, hid in enumerate(ids)],
        visits=[visit(hid) for hid in ids],
    )
    assert set((await push(client, phone, batch)).statuses()) == {"applied"}
    for hid, values in zip(ids, HOUSEHOLDS, strict=True):
        await session.execute(update(Household).where(col(Household.id) == hid).values(**values))
    await session.commit()

    maker = async_sessionmaker(session.bind, expire_on_commit=False)
    async with maker() as reading:
        query = repository.households_query(reading, None, Filters(), consenting_only=False)
        rows = [row async for row in repository.stream(reading, query)]
        grouped = await repository.settlement_counts(reading, query, DECISION_CELLS[:-1])
    expected = reference_counts(rows)
    assert expected[A]["reason_no_transport"] == 1  # named twice by one household
    assert expected[A]["decision_no_decision"] == expected[B]["decision_no_decision"] == 1
    assert expected[B]["reason_attachment_to_home"] == 2
    assert {pcode: +count for pcode, count in grouped.items()} == {
        pcode: +count for pcode, count in expected.items()
    }
