"""A push that races a merge: PostgreSQL, where writers really run side by side."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.factories import assert_problem
from tests.review.conftest import World
from tests.sync.helpers import push, visit


async def _wait_for_lock_waiter(session: AsyncSession) -> None:
    for _ in range(200):
        waiting = await session.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
        await session.commit()
        if waiting:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the push never waited for the household's lock")


async def test_a_push_that_races_a_merge_stores_nothing_and_its_retry_lands_on_the_survivor(
    world: World, session: AsyncSession, backend: str
) -> None:
    """The push looks for merges, then waits for the household's lock while a merge
    commits; it must not store a visit on the merged-away household."""
    if backend != "postgresql":
        pytest.skip("SQLite runs one writer at a time: a merge cannot commit mid-push")
    survivor = await world.household(address="вул. Паралельна, 1")
    duplicate = await world.household(address="вул. Паралельна, 1")
    batch = world.worker.batch(visits=[visit(duplicate, decision="leave")])
    key = int.from_bytes(uuid.UUID(duplicate).bytes[:8], "big", signed=True)

    engine = session.bind
    async with engine.connect() as merger:  # type: ignore[union-attr]
        # What a merge holds while it works: the household's advisory lock.
        await merger.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
        racing = asyncio.create_task(push(world.client, world.worker, batch))
        await _wait_for_lock_waiter(session)
        await merger.execute(
            text("UPDATE household SET merged_into = :s, version = version + 1 WHERE id = :d"),
            {"s": uuid.UUID(survivor), "d": uuid.UUID(duplicate)},
        )
        await merger.commit()
        raced = await racing

    body = assert_problem(raced.response, 503)
    assert raced.response.headers["retry-after"] == "1"
    assert "merged" in body["detail"]
    stored = await session.scalar(text("SELECT count(*) FROM visit"))
    await session.commit()
    assert stored == 0

    retried = await push(world.client, world.worker, batch)
    assert retried.statuses() == ["applied"]
    home = await session.scalar(text("SELECT household_id FROM visit"))
    await session.commit()
    assert str(home) == survivor
