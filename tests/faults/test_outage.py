"""The database goes away under load and comes back: 503 with Retry-After, nothing
half-committed, and the same server processes recover by themselves.

A PostgreSQL server of the test's own (tests/private_postgres.py; the shared one is never
stopped) under a real one-worker server. Three simulated phones push and pull in a loop.
PostgreSQL is then stopped at once (`pg_ctl stop -m immediate`, a crash: transactions in
flight are lost) for a few seconds, and started again. During the outage:

- a push, a pull and a sign-in are each answered 503, `application/problem+json`, with
  `Retry-After`; `/readyz` answers 503 naming the database unreachable; nothing is 500.

After it, without restarting anything:

- `/readyz` is 200 again and the phones' retries go through, on the same worker process
  (its connection pool drops the dead connections: pool_pre_ping);
- nothing is half-committed: the batch answered 503 is not journaled and none of its
  visits is stored, every journaled batch holds its answer, every visit the phones
  recorded is stored once, each household is the fold of what was recorded, and the
  replicas equal the server (bench/verify.py).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.core.errors import PROBLEM_JSON
from app.sync.models import SyncBatch
from app.visits.models import Visit
from bench import fieldwork
from bench.device import Device
from bench.verify import verify
from tests.factories import PASSWORD
from tests.faults.helpers import engine_for, phone, seed
from tests.private_postgres import PrivatePostgres
from tests.servers import ServerProcess, assert_clean_log

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SETTLEMENT = "UA6308013001"
PHONES = 3
OUTAGE_SECONDS = 2.0
LOAD_SECONDS_AROUND = 1.0
RECOVERY_TIMEOUT = 30.0


@pytest.fixture
def private_database(private_postgres: PrivatePostgres) -> tuple[PrivatePostgres, str]:
    return private_postgres, private_postgres.create_database()


async def work(
    device: Device, rng: random.Random, households: list[str], stop: asyncio.Event
) -> None:
    """A phone at work: a few visits, then sync, again and again until told to stop."""
    while not stop.is_set():
        for _ in range(rng.randint(3, 15)):
            fieldwork.visit(rng, device, rng.choice(households))
        await device.sync()
        await asyncio.sleep(rng.uniform(0.05, 0.3))


def probe_batch(device: Device, household: str) -> dict[str, Any]:
    return {
        "batch_id": str(uuid.uuid4()),
        "device_id": str(device.device_id),
        "sent_at": datetime.now(UTC).isoformat(),
        "households": [],
        "visits": [
            {
                "id": str(uuid.uuid4()),
                "household_id": household,
                "visited_at": datetime.now(UTC).isoformat(),
                "outcome": "not_home",
            }
        ],
    }


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == PROBLEM_JSON, response.headers
    assert int(response.headers["retry-after"]) > 0, response.headers


async def test_a_database_outage_is_503_with_retry_after_then_recovers_without_a_restart(
    private_database: tuple[PrivatePostgres, str],
) -> None:
    postgres, url = private_database
    rng = random.Random(int(os.environ.get("FIELDSYNC_TEST_SEED") or random.randrange(2**32)))
    async with engine_for(url) as engine:
        users = await seed(engine, [SETTLEMENT], PHONES)
        server = ServerProcess(url, workers=1)
        server.start()
        context = f"(server log {server.log_path}; PostgreSQL log {postgres.log_path})"
        phones = [phone(server.base_url, u, seed=rng.randrange(2**32)) for u in users]
        probe_http = httpx.AsyncClient(base_url=server.base_url, timeout=10)
        try:
            for device in phones:
                await device.sign_in()
            households = [fieldwork.new_household(rng, phones[0], SETTLEMENT) for _ in range(8)]
            for device in phones:
                await device.sync()
            workers_before = server.worker_pids()

            stop = asyncio.Event()
            load = [asyncio.create_task(work(device, rng, households, stop)) for device in phones]
            await asyncio.sleep(LOAD_SECONDS_AROUND)

            # --- The outage.
            await asyncio.to_thread(postgres.stop, immediate=True)
            outage_started = time.monotonic()
            headers = phones[0].auth_headers()
            refused_batch = probe_batch(phones[0], households[0])
            pushed = await probe_http.post("/api/v1/sync/push", json=refused_batch, headers=headers)
            pulled = await probe_http.get("/api/v1/sync/pull", headers=headers)
            signed_in = await probe_http.post(
                "/api/v1/auth/token",
                data={"username": users[1].username, "password": PASSWORD},
            )
            ready = await probe_http.get("/readyz")
            await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - outage_started)))
            await asyncio.to_thread(postgres.start)

            for response in (pushed, pulled, signed_in):
                assert_unavailable(response)
            assert ready.status_code == 503, ready.text
            assert ready.json()["database"] == "unreachable", ready.text

            # --- Recovery, by itself.
            deadline = time.monotonic() + RECOVERY_TIMEOUT
            while (await probe_http.get("/readyz")).status_code != 200:
                assert time.monotonic() < deadline, f"/readyz did not recover {context}"
                await asyncio.sleep(0.1)
            recovered_after = time.monotonic() - outage_started
            await asyncio.sleep(LOAD_SECONDS_AROUND)
            stop.set()
            await asyncio.wait_for(asyncio.gather(*load), timeout=RECOVERY_TIMEOUT)
            for device in phones:
                await device.sync()  # everyone pulls what the others pushed last
            assert server.running, context
            assert server.worker_pids() == workers_before, f"the server was restarted {context}"

            report = await verify(engine, phones)
            async with AsyncSession(engine) as session:
                refused_stored = await session.scalar(
                    select(func.count())
                    .select_from(Visit)
                    .where(col(Visit.id) == uuid.UUID(refused_batch["visits"][0]["id"]))
                )
                refused_journaled = await session.get(
                    SyncBatch, uuid.UUID(refused_batch["batch_id"])
                )
                unanswered = await session.scalar(
                    select(func.count())
                    .select_from(SyncBatch)
                    .where(col(SyncBatch.response_body) == b"")
                )
            log = server.log_text()
        finally:
            await probe_http.aclose()
            for device in phones:
                await device.close()
            server.close()

    statuses: Counter[int] = sum((d.stats.statuses for d in phones), start=Counter())
    print(
        f"recovered {recovered_after:.1f} s after the outage began; answers {dict(statuses)}; "
        f"{report.summary()}"
    )
    assert report.ok, f"{report.summary()} {context}"
    assert refused_stored == 0, "a visit of the batch answered 503 was stored"
    assert refused_journaled is None, "the batch answered 503 was journaled"
    assert unanswered == 0, "a journaled batch has no answer: half-committed"
    assert statuses[503] > 0, f"the phones never met the outage: {dict(statuses)}"
    assert not [s for s in statuses if s >= 500 and s != 503], dict(statuses)
    # The outage is logged as WARNING lines ("database unavailable"), never as an error.
    assert_clean_log(log, context)
