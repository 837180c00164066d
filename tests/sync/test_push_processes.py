"""Concurrent pushes to a real server with two worker processes on PostgreSQL.

Twenty phones sign in over HTTP and push batches of visits to the same thirty
households at once, some resending what they already sent. Every item must be
stored exactly once, nothing may deadlock, and each household's state must be what
folding every visit one after another gives (docs/PROTOCOL.md, guarantees 1 to 3).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.core.db import create_engine
from app.households.fold import FoldState, Observation, decode_stamps, fold
from app.households.models import Household
from app.visits import codes
from app.visits.models import Visit
from app.visits.service import observation
from tests.conftest import make_settings
from tests.factories import make_settlement, make_user
from tests.servers import (
    ServerProcess,
    assert_clean_log,
    cpu_seconds,
)
from tests.sync.helpers import SETTLEMENT, Phone, household, sign_in_phones, visit

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

PHONES = 20
HOUSEHOLDS = 30
BATCHES_PER_PHONE = 5
VISITS_PER_BATCH = 20
#: Fields of the canonical state that visits set, and their value before any visit.
STATE_FIELDS: dict[str, Any] = {
    "decision": None,
    "reasons": [],
    "needs": [],
    "last_outcome": None,
    "last_visit_at": None,
    "consent_to_share": None,
    "planned_departure": None,
}
REQUEST_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
PUSH_PHASE_SECONDS = 45.0


@dataclass
class Sent:
    """One push request and its answer."""

    phone: Phone
    batch: dict[str, Any]
    kind: str  # "first", "resend" (same batch again) or "items_again" (new batch id)
    status_code: int = 0
    text: str = ""
    body: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def statuses(self) -> list[str]:
        return [r["status"] for r in self.body.get("results", [])]

    def describe(self) -> str:
        return (
            f"{self.kind} batch {self.batch['batch_id']} from {self.phone.user.username}: "
            f"{self.status_code} {self.text[:2000]}"
        )


async def post(http: httpx.AsyncClient, sent: Sent) -> Sent:
    started = time.monotonic()
    response = await http.post("/api/v1/sync/push", json=sent.batch, headers=sent.phone.headers)
    sent.seconds = time.monotonic() - started
    sent.status_code = response.status_code
    sent.text = response.text
    if response.headers.get("content-type", "").endswith("json"):
        sent.body = response.json()
    return sent


def random_visit(rng: random.Random, household_id: str, now: datetime) -> dict[str, Any]:
    """A valid visit: decision, reasons and needs drawn from app/visits/codes.py."""
    visited_at = now - timedelta(
        seconds=rng.randrange(60, 4 * 3600), microseconds=rng.randrange(10**6)
    )
    if rng.random() < 0.15:
        return visit(
            household_id,
            visit_id=uuid.UUID(int=rng.getrandbits(128), version=4),
            visited_at=visited_at,
            outcome="not_home",
            decision=None,
            consent_to_share=rng.random() < 0.5,
        )
    decision = rng.choice(["stay", "leave", "undecided"])
    reasons = rng.sample(sorted(codes.reasons_for(decision)), k=rng.randint(0, 3))
    needs_pool = sorted(codes.NEED_CODES - {codes.NO_NEEDS})
    needs = [codes.NO_NEEDS] if rng.random() < 0.2 else rng.sample(needs_pool, k=rng.randint(0, 3))
    departure = now.date() + timedelta(days=rng.randint(0, 14))
    return visit(
        household_id,
        visit_id=uuid.UUID(int=rng.getrandbits(128), version=4),
        visited_at=visited_at,
        outcome="contacted",
        decision=decision,
        reasons=reasons,
        reason_note="Синтетична примітка" if codes.OTHER in reasons else "",
        needs=needs,
        planned_departure=departure.isoformat() if decision == "leave" else None,
        consent_to_share=rng.random() < 0.8,
    )


def expected_states(
    sent_visits: dict[str, tuple[Phone, dict[str, Any]]],
) -> dict[uuid.UUID, FoldState]:
    """Each household's state folded from every visit sent, one after another."""
    observations: dict[uuid.UUID, list[Observation]] = {}
    for phone, item in sent_visits.values():
        planned = item.get("planned_departure")
        row = {
            "id": uuid.UUID(item["id"]),
            "device_id": phone.device_id,
            "recorded_by": phone.user.id,
            "visited_at": datetime.fromisoformat(item["visited_at"]),
            "outcome": item["outcome"],
            "decision": item["decision"],
            "reasons": item["reasons"],
            "needs": item["needs"],
            "planned_departure": date.fromisoformat(planned) if planned else None,
            "consent_to_share": item["consent_to_share"],
        }
        hid = uuid.UUID(item["household_id"])
        observations.setdefault(hid, []).append(observation(row))
    return {hid: fold(FoldState(), obs, version=1) for hid, obs in observations.items()}


async def test_concurrent_pushes_to_two_processes_fold_like_one_sequence(
    database: str, server: ServerProcess
) -> None:
    seed = int(os.environ.get("FIELDSYNC_TEST_SEED") or random.randrange(2**32))
    rng = random.Random(seed)
    context = f"(random seed {seed}; server log {server.log_path})"

    # --- Arrange: a settlement and twenty field workers, straight into the database.
    engine = create_engine(make_settings(database))
    try:
        async with AsyncSession(engine, expire_on_commit=False) as session:
            await make_settlement(session, SETTLEMENT)
            users = [await make_user(session, settlements=[SETTLEMENT]) for _ in range(PHONES)]

        # A new connection per request (as on a phone's flaky link), so that both worker
        # processes accept some: one worker may take a whole burst of queued connections.
        clients = [
            httpx.AsyncClient(
                base_url=server.base_url,
                timeout=REQUEST_TIMEOUT,
                limits=httpx.Limits(max_keepalive_connections=0),
            )
            for _ in range(PHONES)
        ]
        try:
            # --- Every phone signs in over HTTP, at once.
            phones = await sign_in_phones(clients, users)

            # --- One phone registers the thirty households.
            household_ids = [str(uuid.uuid4()) for _ in range(HOUSEHOLDS)]
            now = datetime.now(UTC)
            registration = Sent(
                phones[0],
                phones[0].batch(
                    households=[
                        household(uuid.UUID(hid), observed_at=now - timedelta(hours=5))
                        for hid in household_ids
                    ]
                ),
                "first",
            )
            await post(clients[0], registration)
            assert registration.status_code == 200, registration.describe()
            assert registration.statuses() == ["applied"] * HOUSEHOLDS, registration.describe()

            # --- Every phone records its visits to the shared households.
            sent_visits: dict[str, tuple[Phone, dict[str, Any]]] = {}
            plans: list[list[list[dict[str, Any]]]] = []
            for phone in phones:
                batches = []
                for _ in range(BATCHES_PER_PHONE):
                    items = [
                        random_visit(rng, rng.choice(household_ids), now)
                        for _ in range(VISITS_PER_BATCH)
                    ]
                    for item in items:
                        sent_visits[item["id"]] = (phone, item)
                    batches.append(items)
                plans.append(batches)

            async def run_phone(index: int) -> list[Sent]:
                """Push a phone's batches in order, as a phone does, with some resends."""
                phone, http = phones[index], clients[index]
                batches: list[dict[str, Any]] = []
                done: list[Sent] = []
                for number, items in enumerate(plans[index]):
                    # Built just before sending, so `sent_at` is the phone's clock then.
                    batch = phone.batch(visits=items)
                    batches.append(batch)
                    first = Sent(phone, batch, "first")
                    if index % 4 == 1 and number == 2:
                        # The response was lost and the phone retried while the first
                        # send was still being processed: two sends of one batch at once.
                        again = Sent(phone, batch, "resend")
                        done += await asyncio.gather(post(http, first), post(http, again))
                    elif index % 4 == 3 and number == 1:
                        # Half of the batch's visits again, in a new batch, at the same time:
                        # each visit is stored once, and the other send calls it a duplicate.
                        half = phone.batch(visits=batch["visits"][: VISITS_PER_BATCH // 2])
                        again = Sent(phone, half, "items_again")
                        done += await asyncio.gather(post(http, first), post(http, again))
                    else:
                        done.append(await post(http, first))
                if index % 4 == 2:
                    # A retry of an answered batch: same batch id, same body.
                    done.append(await post(http, Sent(phone, batches[0], "resend")))
                if index % 4 == 0:
                    # Visits already answered, again in a new batch: duplicates.
                    half = phone.batch(visits=batches[0]["visits"][: VISITS_PER_BATCH // 2])
                    done.append(await post(http, Sent(phone, half, "items_again")))
                return done

            workers = server.worker_pids()
            cpu_before = [cpu_seconds(pid) for pid in workers]
            started = time.monotonic()
            try:
                async with asyncio.timeout(PUSH_PHASE_SECONDS):
                    per_phone = await asyncio.gather(*(run_phone(i) for i in range(PHONES)))
            except TimeoutError:
                pytest.fail(
                    f"the pushes did not finish within {PUSH_PHASE_SECONDS:.0f} s {context}\n"
                    f"{server.log_tail()}"
                )
            elapsed = time.monotonic() - started
            cpu_after = [cpu_seconds(pid) for pid in workers]
        finally:
            await asyncio.gather(*(http.aclose() for http in clients))
        sends = [sent for done in per_phone for sent in done]
        cpu = [
            f"{pid}: {after - before:.1f} s" if before is not None and after is not None else "?"
            for pid, before, after in zip(workers, cpu_before, cpu_after, strict=True)
        ]
        latencies = sorted(sent.seconds for sent in sends)
        print(  # shown with -s or on failure
            f"{len(sends)} pushes in {elapsed:.1f} s; latency median "
            f"{latencies[len(latencies) // 2]:.2f} s, max {latencies[-1]:.2f} s; "
            f"worker CPU {', '.join(cpu)}; {context}"
        )

        # --- Both worker processes served pushes (where /proc tells CPU time).
        assert len(workers) == 2, server.log_tail()
        for pid, before, after in zip(workers, cpu_before, cpu_after, strict=True):
            if before is not None and after is not None:
                assert after - before > 0.05, f"worker {pid} served no push: {cpu} {context}"

        # --- Every request answered 200, nothing rejected, nothing deadlocked.
        for sent in sends:
            assert sent.status_code == 200, f"{sent.describe()} {context}"
            assert "deadlock" not in sent.text.lower(), f"{sent.describe()} {context}"
            assert "rejected" not in sent.statuses(), f"{sent.describe()} {context}"
        log = server.log_text()
        assert "deadlock" not in log.lower(), f"the server log mentions a deadlock {context}"
        assert_clean_log(log, context)

        # --- Each visit applied exactly once; every other send of it is a duplicate, and a
        # retried batch got the journaled answer back.
        first_answer = {sent.batch["batch_id"]: sent.body for sent in sends if sent.kind == "first"}
        answers: dict[str, list[str]] = {vid: [] for vid in sent_visits}
        for sent in sends:
            ids = [item["id"] for item in sent.batch["visits"]]
            assert [r["id"] for r in sent.body["results"]] == ids, sent.describe()
            if sent.kind == "resend":
                assert sent.body == first_answer[sent.batch["batch_id"]], sent.describe()
                continue
            for vid, status in zip(ids, sent.statuses(), strict=True):
                answers[vid].append(status)
        for vid, statuses in answers.items():
            stored_by = [s for s in statuses if s in ("applied", "conflict")]
            assert len(stored_by) == 1, f"visit {vid} was answered {statuses} {context}"
            assert statuses.count("duplicate") == len(statuses) - 1, f"{vid}: {statuses}"

        # --- Stored exactly once, and folded as if the visits came one after another.
        expected = expected_states(sent_visits)
        async with AsyncSession(engine) as session:
            stored_ids = set((await session.scalars(select(col(Visit.id)))).all())
            pending = await session.scalar(
                select(func.count()).select_from(Visit).where(col(Visit.fold_state) != "folded")
            )
            rows = (await session.scalars(select(Household))).all()
        assert stored_ids == {uuid.UUID(vid) for vid in sent_visits}, context
        assert pending == 0, context
        assert {str(h.id) for h in rows} == set(household_ids), context
        mismatches = []
        for row in rows:
            want = expected[row.id]
            for name, default in STATE_FIELDS.items():
                value = getattr(row, name)
                if value != want.values.get(name, default):
                    mismatches.append(
                        f"{row.id} {name}: stored {value!r}, "
                        f"sequential fold {want.values.get(name, default)!r}"
                    )
                # The same visit must have won the field, not just an equal value.
                stamp = decode_stamps(row.field_stamps).get(name)
                won_by = None if stamp is None else stamp.key
                wanted = want.stamps[name].key if name in want.stamps else None
                if won_by != wanted:
                    mismatches.append(f"{row.id} {name}: won by {won_by}, sequential fold {wanted}")
        assert not mismatches, "\n".join(
            [f"{len(mismatches)} differences from the sequential fold {context}", *mismatches[:30]]
        )
    finally:
        await engine.dispose()
