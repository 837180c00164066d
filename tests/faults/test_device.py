"""The device simulator (bench/device.py) against the app in process, and the checker
(bench/verify.py) that the fault tests and the soak end with.

Three phones on a link that drops requests and answers, sends some twice and shuffles
batches, two of them with wrong clocks, record households, edits and visits over a few
rounds of sync. Everything must be stored once and folded as recorded, and every replica
must equal the server. Then the checker must catch a store that lost a visit or changed
a household behind the phones' backs: a check that cannot fail proves nothing.

A supervisor's merge reaches a phone as a tombstone: its replica drops the duplicate, and
a visit recorded to the duplicate but not sent yet is sent for the survivor.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.auth.models import Role
from app.households.models import Household
from app.visits.models import Visit
from bench import fieldwork
from bench.device import Backoff, Device, Link
from bench.verify import verify
from tests.factories import PASSWORD, bearer, make_settlement, make_user, read_fresh, tokens_for

SETTLEMENT = "UA6308013001"
FLAKY = Link(drop_before=0.15, drop_after=0.25, duplicate=0.15, reorder=True)
SKEWS = (timedelta(0), timedelta(hours=3), timedelta(minutes=-10))


@pytest.fixture
async def phones(app: FastAPI, session: AsyncSession) -> AsyncIterator[list[Device]]:
    await make_settlement(session, SETTLEMENT)
    devices = []
    for i, skew in enumerate(SKEWS):
        user = await make_user(session, settlements=[SETTLEMENT])
        devices.append(
            Device(
                "http://fieldsync.test",
                user.username,
                PASSWORD,
                transport=httpx.ASGITransport(app=app),
                link=FLAKY,
                seed=i,
                clock_skew=skew,
                backoff=Backoff(base=0.001, cap=0.01, give_up_after=30),
                batch_size=7,
                pull_limit=4,
            )
        )
    try:
        yield devices
    finally:
        for device in devices:
            await device.close()


async def fieldwork_rounds(phones: list[Device], rng: random.Random) -> None:
    for phone in phones:
        await phone.sign_in()
    for round_number in range(3):
        for phone in phones:
            await phone.pull()
            known = sorted(phone.replica)
            for _ in range(2 if round_number == 0 else 1):
                known.append(fieldwork.new_household(rng, phone, SETTLEMENT))
            for household in rng.sample(known, k=min(3, len(known))):
                fieldwork.edit_household(rng, phone, household)
            for _ in range(8):
                fieldwork.visit(rng, phone, rng.choice(known))
            await phone.sync()
    for phone in phones:
        await phone.sync()  # everyone pulls what the others pushed last


async def test_phones_on_a_flaky_link_deliver_everything_once_and_the_checker_sees_it(
    app: FastAPI, phones: list[Device]
) -> None:
    await fieldwork_rounds(phones, random.Random(7))

    assert all(phone.pending() == 0 for phone in phones)
    report = await verify(app.state.engine, phones)
    assert report.ok, report.summary()
    assert report.visits_recorded == 3 * 3 * 8, report.summary()
    assert report.visits_stored == report.visits_recorded, report.summary()
    # The link did misbehave: every kind of fault happened, and was survived.
    stats = [phone.stats for phone in phones]
    assert sum(s.dropped_before for s in stats) > 0
    assert sum(s.dropped_after for s in stats) > 0
    assert sum(s.duplicated for s in stats) > 0
    assert sum(s.retries for s in stats) > 0
    # Answers lost after the server stored the batch were answered again, not stored again.
    assert sum(s.visits_answered for s in stats) > report.visits_stored
    # A batch keeps its id and items: several were sent more than once.
    assert any(b.attempts > 1 for phone in phones for b in phone.batches())
    # The wrong clocks were corrected: the answers carried the offsets.
    offsets = [
        answer["clock_offset_seconds"]
        for b in phones[1].batches()
        if (answer := b.answer) is not None
    ]
    assert offsets, "the phone with the wrong clock got no answer"
    assert all(abs(o + 3 * 3600) < 60 for o in offsets), offsets

    # --- The checker catches a store that lost a visit or changed a household.
    recorded = phones[0].recorded()
    lost_visit = next(r.item["id"] for r in recorded if r.kind == "visit")
    household = next(r.item["id"] for r in recorded if r.kind == "household")
    async with AsyncSession(app.state.engine) as session:
        await session.execute(delete(Visit).where(col(Visit.id) == uuid.UUID(lost_visit)))
        await session.execute(
            update(Household)
            .where(col(Household.id) == uuid.UUID(household))
            .values(address="вул. Підмінена, 1")
        )
        await session.commit()
    report = await verify(app.state.engine, phones)
    assert any(lost_visit in line for line in report.lost), report.summary()
    assert any(household in line and "address" in line for line in report.fold), report.summary()
    assert any(household in line and "address" in line for line in report.replicas), (
        report.summary()
    )


async def test_a_merge_reaches_the_phone_as_a_tombstone_and_unsent_visits_follow_it(
    app: FastAPI, session: AsyncSession, phones: list[Device]
) -> None:
    phone = phones[0]
    rng = random.Random(9)
    supervisor = await make_user(session, Role.supervisor, settlements=[SETTLEMENT])
    await phone.sign_in()
    survivor = fieldwork.new_household(rng, phone, SETTLEMENT)
    duplicate = fieldwork.new_household(rng, phone, SETTLEMENT)
    await phone.sync()
    assert {survivor, duplicate} <= set(phone.replica)

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://fieldsync.test"
    ) as http:
        token = (await tokens_for(http, supervisor))["access_token"]
        merged = await http.post(
            f"/api/v1/households/{survivor}/merge",
            json={"duplicate_id": duplicate, "note": "Той самий двір (synthetic)."},
            headers=bearer(token),
        )
    assert merged.status_code == 200, merged.text

    unsent = phone.record_visit(duplicate, outcome="not_home")
    await phone.pull()
    assert duplicate not in phone.replica
    assert survivor in phone.replica
    item = next(r.item for r in phone.recorded() if r.item["id"] == unsent)
    assert item["household_id"] == survivor  # re-pointed before it was ever sent
    await phone.push()
    stored = await read_fresh(session, select(Visit).where(col(Visit.id) == uuid.UUID(unsent)))
    assert [v.household_id for v in stored] == [uuid.UUID(survivor)]
