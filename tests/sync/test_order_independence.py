"""Guarantee 3 of docs/PROTOCOL.md: order does not matter.

The canonical state after a set of batches is the same whatever order they arrive in
and however often they are retried, and an old observation that arrives late never
overwrites a newer one. The property test generates households, phones, visits and
household edits, splits them into per-phone batches, and pushes them in several
orders (with whole batches retried under the same batch id, and items re-sent in new
batches). Each order starts from an empty database with the same users and devices;
every order must end in the same state, and that state must be the pure fold of
everything generated.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, Literal

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.auth.models import Device, Role, User
from app.conflicts.models import Conflict
from app.core.config import Settings
from app.core.security import create_access_token
from app.households import service as households
from app.households.fold import FoldState, Observation, fold
from app.households.models import Household, HouseholdEdit
from app.visits import codes
from app.visits import service as visits
from app.visits.models import Visit
from tests.databases import clear_tables
from tests.factories import make_settlement, read_fresh
from tests.sync.helpers import (
    SETTLEMENT,
    Phone,
    candidates,
    ensure_settlement,
    household,
    make_phone,
    now,
    push,
    visit,
)

OTHER_SETTLEMENT = "UA6308013002"
SETTLEMENTS = (SETTLEMENT, OTHER_SETTLEMENT)
PUSH = "/api/v1/sync/push"
BASE_URL = "http://fieldsync.test"
#: Batch ids are derived from the example, so a drawn example replays exactly.
BATCH_NAMESPACE = uuid.UUID("6b0f3c1e-7a54-4f0e-9d0b-2f1d6c9e8a11")

#: The canonical state fields compared across orders (not `version`: it counts changes,
#: and how many changes a household went through depends on the order).
STATE_FIELDS = (
    "settlement_pcode",
    "address",
    "head_name",
    "members",
    "decision",
    "reasons",
    "needs",
    "planned_departure",
    "last_outcome",
    "last_visit_at",
    "consent_to_share",
)

State = dict[uuid.UUID, dict[str, Any]]
Conflicts = dict[uuid.UUID, set[str]]


# --- The generated world -----------------------------------------------------------


@dataclass(frozen=True)
class Worker:
    """A field worker and the one phone they record on."""

    user_id: uuid.UUID
    device_id: uuid.UUID


@dataclass(frozen=True)
class Item:
    """A household edit or a visit as recorded on a phone, `age` before the run starts."""

    kind: Literal["household", "visit"]
    worker: int
    household_id: uuid.UUID
    age: timedelta
    #: The UTC offset the phone writes its times with (the instant is the same).
    zone_hours: int
    #: The rest of the item as sent; the time field is added by `body`.
    fields: dict[str, Any]

    def at(self, start: datetime) -> datetime:
        return (start - self.age).astimezone(timezone(timedelta(hours=self.zone_hours)))

    def body(self, start: datetime) -> dict[str, Any]:
        time_field = "observed_at" if self.kind == "household" else "visited_at"
        return {**self.fields, time_field: self.at(start).isoformat()}


@dataclass(frozen=True)
class Scenario:
    workers: tuple[Worker, ...]
    household_ids: tuple[uuid.UUID, ...]
    items: tuple[Item, ...]
    #: Item indices per batch; every item of a batch was recorded by the same worker.
    batches: tuple[tuple[int, ...], ...]

    def worker_of(self, batch: int) -> int:
        return self.items[self.batches[batch][0]].worker


@dataclass(frozen=True)
class Send:
    """One push: a batch as first built (sent again under its own id if it repeats), or
    some of its items re-sent in a new batch with a new id."""

    batch: int
    resent_items: tuple[int, ...] | None = None
    renew_sent_at: bool = True


@dataclass(frozen=True)
class Case:
    scenario: Scenario
    orders: tuple[tuple[Send, ...], ...]


MINUTE_US = 60 * 1_000_000
#: Visits and edits happened between a minute and ten days before the run.
AGES_US = st.integers(min_value=MINUTE_US, max_value=10 * 24 * 60 * MINUTE_US)
ZONES = st.sampled_from([0, 2, 3])
OUTCOMES = st.sampled_from(
    ["contacted", "contacted", "contacted", "contacted", "not_home", "refused", "household_left"]
)
NEEDS = sorted(codes.NEED_CODES - {codes.NO_NEEDS})


@st.composite
def _edit_fields(draw: st.DrawFn, household_id: uuid.UUID) -> dict[str, Any]:
    # Every edit names its settlement, so whichever edit arrives first creates the household.
    fields: dict[str, Any] = {
        "id": str(household_id),
        "settlement": draw(st.sampled_from(SETTLEMENTS)),
        "base_version": draw(st.none() | st.integers(min_value=0, max_value=3)),
    }
    profile = {
        "address": st.sampled_from(["вул. Синтетична, 1", "вул. Синтетична, 2", ""]),
        "members": st.none() | st.integers(min_value=0, max_value=6),
        "head_name": st.sampled_from(["Синтетична Особа", "Synthetic Person"]),
    }
    for name in draw(st.sets(st.sampled_from(sorted(profile)))):
        fields[name] = draw(profile[name])
    return fields


@st.composite
def _visit_fields(draw: st.DrawFn, visit_id: uuid.UUID, household_id: uuid.UUID) -> dict[str, Any]:
    outcome = draw(OUTCOMES)
    fields: dict[str, Any] = {
        "id": str(visit_id),
        "household_id": str(household_id),
        "outcome": outcome,
        "consent_to_share": draw(st.booleans()),
        "needs": draw(
            st.just([codes.NO_NEEDS]) | st.lists(st.sampled_from(NEEDS), unique=True, max_size=3)
        ),
        "planned_departure": draw(
            st.none() | st.dates(date(2026, 1, 1), date(2027, 12, 31)).map(date.isoformat)
        ),
    }
    if outcome != "contacted":
        fields["decision"] = None
        return fields
    decision = draw(st.sampled_from(["stay", "leave", "undecided"]))
    reasons = draw(
        st.lists(st.sampled_from(sorted(codes.reasons_for(decision))), unique=True, max_size=3)
    )
    fields.update(decision=decision, reasons=reasons)
    if codes.OTHER in reasons:
        fields["reason_note"] = "Синтетична причина."
    if decision == "leave":
        fields["leave_mode"] = draw(st.sampled_from(["organised_evacuation", "own_means"]))
    if decision == "stay":
        fields["signed_refusal"] = draw(st.booleans())
    return fields


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    n_workers = draw(st.integers(min_value=2, max_value=3))
    n_households = draw(st.integers(min_value=2, max_value=3))
    n_visits = draw(st.integers(min_value=4, max_value=12))
    ids = iter(
        draw(
            st.lists(
                st.uuids(version=4),
                min_size=2 * n_workers + n_households + n_visits,
                max_size=2 * n_workers + n_households + n_visits,
                unique=True,
            )
        )
    )
    workers = tuple(Worker(user_id=next(ids), device_id=next(ids)) for _ in range(n_workers))
    household_ids = tuple(next(ids) for _ in range(n_households))
    # Times come from a small pool, so exact ties across phones are common.
    pool = draw(st.lists(AGES_US, min_size=1, max_size=6))
    ages = st.sampled_from(pool).map(lambda us: timedelta(microseconds=us))
    pick_worker = st.integers(min_value=0, max_value=n_workers - 1)

    items: list[Item] = []
    # Edits: at least one per household. At most one edit per (household, phone, instant):
    # the server derives an edit's id from its content, so only the time and the phone
    # may decide between two edits, never the (server-made) id.
    edit_keys: set[tuple[uuid.UUID, int, timedelta]] = set()
    for household_id in household_ids:
        for _ in range(draw(st.integers(min_value=1, max_value=3))):
            worker, age = draw(pick_worker), draw(ages)
            if (household_id, worker, age) in edit_keys:
                continue
            edit_keys.add((household_id, worker, age))
            fields = draw(_edit_fields(household_id))
            items.append(Item("household", worker, household_id, age, draw(ZONES), fields))
    for _ in range(n_visits):
        household_id = draw(st.sampled_from(household_ids))
        fields = draw(_visit_fields(next(ids), household_id))
        items.append(
            Item("visit", draw(pick_worker), household_id, draw(ages), draw(ZONES), fields)
        )

    # Each phone sends what it recorded in one to three batches.
    slots: dict[tuple[int, int], list[int]] = defaultdict(list)
    for index, item in enumerate(items):
        slots[(item.worker, draw(st.integers(min_value=0, max_value=2)))].append(index)
    batches = tuple(tuple(slots[key]) for key in sorted(slots))
    return Scenario(workers, household_ids, tuple(items), batches)


@st.composite
def orders(draw: st.DrawFn, scenario: Scenario) -> tuple[Send, ...]:
    """The batches in some order, some sent twice, some items re-sent in new batches."""
    n = len(scenario.batches)
    sends = [Send(b) for b in range(n)]
    batch = st.integers(min_value=0, max_value=n - 1)
    for b in draw(st.lists(batch, max_size=3)):
        sends.append(Send(b, renew_sent_at=draw(st.booleans())))
    for b in draw(st.lists(batch, max_size=2)):
        chosen = draw(st.sets(st.sampled_from(scenario.batches[b]), min_size=1))
        sends.append(Send(b, resent_items=tuple(sorted(chosen))))
    return tuple(draw(st.permutations(sends)))


def newest_first(scenario: Scenario) -> tuple[Send, ...]:
    """The adversarial order: the batch holding the oldest observation arrives last."""
    oldest = [max(scenario.items[i].age for i in batch) for batch in scenario.batches]
    return tuple(Send(b) for b in sorted(range(len(scenario.batches)), key=lambda b: oldest[b]))


@st.composite
def cases(draw: st.DrawFn) -> Case:
    scenario = draw(scenarios())
    drawn = draw(st.lists(orders(scenario), min_size=2, max_size=2))
    return Case(scenario, (newest_first(scenario), *drawn))


# --- What the server should end with -------------------------------------------------


def expected_state(scenario: Scenario, start: datetime) -> State:
    """The pure fold of every generated observation, as household columns."""
    observations: dict[uuid.UUID, list[Observation]] = defaultdict(list)
    for index, item in enumerate(scenario.items):
        worker = scenario.workers[item.worker]
        if item.kind == "household":
            profile = {k: v for k, v in item.fields.items() if k not in ("id", "base_version")}
            observation = households.edit_observation(
                {
                    # Any id will do: no two edits of a household share a phone and an instant.
                    "id": uuid.UUID(int=index),
                    "observed_at": item.at(start),
                    "device_id": worker.device_id,
                    "recorded_by": worker.user_id,
                    "fields": profile,
                }
            )
        else:
            f = item.fields
            planned = f["planned_departure"] and date.fromisoformat(f["planned_departure"])
            observation = visits.observation(
                {
                    "id": uuid.UUID(f["id"]),
                    "visited_at": item.at(start),
                    "device_id": worker.device_id,
                    "recorded_by": worker.user_id,
                    "outcome": f["outcome"],
                    "decision": f["decision"],
                    "reasons": f.get("reasons", []),
                    "needs": f["needs"],
                    "planned_departure": planned,
                    "consent_to_share": f["consent_to_share"],
                }
            )
        observations[item.household_id].append(observation)
    return {
        hid: _as_columns(fold(FoldState(), observations[hid], version=1).values)
        for hid in scenario.household_ids
    }


def expected_conflicts(scenario: Scenario, start: datetime, window: timedelta) -> Conflicts:
    """Visits in a decision conflict: contacted, same household, different workers and
    decisions, within the conflict window of each other."""
    contacted = [
        item
        for item in scenario.items
        if item.kind == "visit" and item.fields["outcome"] == "contacted"
    ]
    conflicts: Conflicts = defaultdict(set)
    for a in contacted:
        for b in contacted:
            if (
                a.household_id == b.household_id
                and a.worker != b.worker
                and a.fields["decision"] != b.fields["decision"]
                and abs(a.at(start) - b.at(start)) <= window
            ):
                conflicts[a.household_id] |= {a.fields["id"], b.fields["id"]}
    return dict(conflicts)


def _as_columns(values: Mapping[str, Any]) -> dict[str, Any]:
    last_visit_at = values.get("last_visit_at")
    return {
        "settlement_pcode": values["settlement"],
        "address": values.get("address") or "",
        "head_name": values.get("head_name") or "",
        "members": values.get("members"),
        "decision": values.get("decision"),
        "reasons": list(values.get("reasons", [])),
        "needs": list(values.get("needs", [])),
        "planned_departure": values.get("planned_departure"),
        "last_outcome": values.get("last_outcome"),
        "last_visit_at": last_visit_at.astimezone(UTC) if last_visit_at else None,
        "consent_to_share": values.get("consent_to_share"),
    }


# --- Running one order against the app ----------------------------------------------


async def _arrange(app: FastAPI, scenario: Scenario) -> None:
    """An empty database with the settlements, users and devices of the scenario."""
    await clear_tables(app.state.engine)
    async with app.state.sessionmaker() as session:
        for pcode in SETTLEMENTS:
            await make_settlement(session, pcode)
        for i, worker in enumerate(scenario.workers):
            session.add(
                User(
                    id=worker.user_id,
                    username=f"worker-{i}",
                    role=Role.field_worker.value,
                    full_name="Synthetic Person",
                    password_hash="not-used",  # the tests mint access tokens directly
                )
            )
        await session.flush()
        for worker in scenario.workers:
            session.add(Device(id=worker.device_id, owner_id=worker.user_id, label="synthetic"))
        await session.commit()


def _payload(
    scenario: Scenario, items: Sequence[int], batch_id: uuid.UUID, start: datetime
) -> dict[str, Any]:
    worker = scenario.workers[scenario.items[items[0]].worker]
    chosen = [scenario.items[i] for i in items]
    return {
        "batch_id": str(batch_id),
        "device_id": str(worker.device_id),
        "sent_at": datetime.now(UTC).isoformat(),
        "app_version": "test-1.0",
        "households": [item.body(start) for item in chosen if item.kind == "household"],
        "visits": [item.body(start) for item in chosen if item.kind == "visit"],
    }


def _in_request_order(scenario: Scenario, items: Sequence[int]) -> list[int]:
    """A batch's items in the order of their results: households first, then visits."""
    return sorted(items, key=lambda i: scenario.items[i].kind != "household")


@dataclass(frozen=True)
class Outcome:
    state: State
    #: The visits named by each household's open decision conflict.
    conflicts: Conflicts
    #: Whether some visit arrived before its household (it was then `pending`).
    had_pending: bool


async def run_order(
    app: FastAPI, settings: Settings, scenario: Scenario, order: Sequence[Send], start: datetime
) -> Outcome:
    """Push the batches in `order` into a fresh database and read back what they left."""
    await _arrange(app, scenario)
    tokens = [
        create_access_token(
            settings, user_id=w.user_id, role=Role.field_worker.value, device_id=w.device_id
        )[0]
        for w in scenario.workers
    ]
    seen: set[int] = set()
    created: set[uuid.UUID] = set()
    pending = False
    first_sends: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        for position, send in enumerate(order):
            headers = {"Authorization": f"Bearer {tokens[scenario.worker_of(send.batch)]}"}
            if send.resent_items is None and send.batch in first_sends:
                # A retry of the whole batch: same batch id, same body (sent_at may be renewed).
                payload, first_answer = first_sends[send.batch]
                if send.renew_sent_at:
                    payload = {**payload, "sent_at": datetime.now(UTC).isoformat()}
                response = await client.post(PUSH, json=payload, headers=headers)
                assert response.status_code == 200, response.text
                assert response.json() == first_answer, "a retried batch must get the same answer"
                continue
            if send.resent_items is None:
                items: Sequence[int] = scenario.batches[send.batch]
                batch_id = uuid.uuid5(BATCH_NAMESPACE, f"batch-{send.batch}")
            else:
                items = send.resent_items
                batch_id = uuid.uuid5(BATCH_NAMESPACE, f"resend-{position}")
            payload = _payload(scenario, items, batch_id, start)
            response = await client.post(PUSH, json=payload, headers=headers)
            assert response.status_code == 200, response.text
            answer = response.json()
            if send.resent_items is None:
                first_sends[send.batch] = (payload, answer)
            ordered = _in_request_order(scenario, items)
            pending |= _check_statuses(scenario, ordered, answer, seen, created)
    state, conflicts = await read_back(app, scenario)
    return Outcome(state, conflicts, pending)


def _check_statuses(
    scenario: Scenario,
    items: Sequence[int],
    answer: dict[str, Any],
    seen: set[int],
    created: set[uuid.UUID],
) -> bool:
    """Every item is stored: duplicate if sent before, pending until its household exists.

    Returns whether some visit was pending.
    """
    results = answer["results"]
    assert len(results) == len(items), answer
    created.update(
        scenario.items[i].household_id for i in items if scenario.items[i].kind == "household"
    )
    for index, result in zip(items, results, strict=True):
        item = scenario.items[index]
        assert result["status"] != "rejected", result
        assert result["kind"] == item.kind, result
        if index in seen:
            expected = {"duplicate"}
        elif item.kind == "visit" and item.household_id not in created:
            expected = {"pending"}
        else:
            expected = {"applied", "conflict"}
        assert result["status"] in expected, (item, result)
        seen.add(index)
    return any(r["status"] == "pending" for r in results)


async def read_back(app: FastAPI, scenario: Scenario) -> tuple[State, Conflicts]:
    async with app.state.sessionmaker() as session:
        rows = await read_fresh(
            session, select(Household).where(col(Household.id).in_(scenario.household_ids))
        )
        stored_visits = await read_fresh(session, select(Visit))
        stored_edits = await read_fresh(session, select(HouseholdEdit))
        conflicts = await read_fresh(
            session, select(Conflict).where(col(Conflict.kind) == "decision_disagreement")
        )
    # Everything was stored once, and every visit is in the fold.
    n_edits = sum(1 for item in scenario.items if item.kind == "household")
    assert len(stored_edits) == n_edits
    assert len(stored_visits) == len(scenario.items) - n_edits
    assert {v.fold_state for v in stored_visits} <= {"folded"}
    assert {h.id for h in rows} == set(scenario.household_ids)
    assert len({c.household_id for c in conflicts}) == len(conflicts)
    state = {h.id: {name: getattr(h, name) for name in STATE_FIELDS} for h in rows}
    listed = {c.household_id: await candidates(session, c.id) for c in conflicts}
    return state, {h: {x["item_id"] for x in xs} for h, xs in listed.items()}


# --- The property ---------------------------------------------------------------------


# The `app` fixture is created once per test, not per example: each order clears the
# database itself. About 10 s per backend.
@hypothesis_settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(case=cases())
async def test_any_order_and_any_retries_give_the_same_canonical_state(
    app: FastAPI, settings: Settings, case: Case
) -> None:
    start = datetime.now(UTC)
    expected = expected_state(case.scenario, start)
    window = timedelta(hours=settings.conflict_window_hours)
    for order in case.orders:
        outcome = await run_order(app, settings, case.scenario, order, start)
        assert outcome.state == expected, order
        event("some visit arrived before its household", outcome.had_pending)
        # The disagreements flagged do not depend on the order either.
        conflicts = expected_conflicts(case.scenario, start, window)
        event("decision conflicts checked", bool(conflicts))
        assert outcome.conflicts == conflicts, order


# --- Late arrivals, one at a time -----------------------------------------------------


async def _household_row(session: AsyncSession, household_id: uuid.UUID) -> Household:
    (row,) = await read_fresh(session, select(Household).where(col(Household.id) == household_id))
    return row


async def _pushed(client: httpx.AsyncClient, phone: Phone, batch: dict[str, Any]) -> list[str]:
    pushed = await push(client, phone, batch)
    assert pushed.response.status_code == 200, pushed.response.text
    return pushed.statuses()


@pytest.mark.parametrize("late_outcome", ["contacted", "not_home"])
async def test_an_old_visit_arriving_last_does_not_overwrite_a_newer_one(
    client: httpx.AsyncClient, session: AsyncSession, late_outcome: str
) -> None:
    pcode = await ensure_settlement(session)
    first = await make_phone(client, session, settlements=[pcode])
    second = await make_phone(client, session, settlements=[pcode])
    hid = uuid.uuid4()
    newer_at, older_at = now() - timedelta(hours=1), now() - timedelta(hours=5)
    newer = visit(hid, visited_at=newer_at, decision="stay", needs=["information"])
    older = visit(
        hid,
        visited_at=older_at,
        outcome=late_outcome,
        decision="leave",
        reasons=["shelling_or_attacks"] if late_outcome == "contacted" else [],
        needs=["transport"],
        consent_to_share=False,
    )
    assert await _pushed(client, first, first.batch(households=[household(hid)])) == ["applied"]
    assert await _pushed(client, first, first.batch(visits=[newer])) == ["applied"]
    # Another worker's older visit arrives last: it is stored (and, when it disagrees,
    # flagged for a supervisor), but the household keeps what the newer visit said.
    late = await _pushed(client, second, second.batch(visits=[older]))
    assert late == ["conflict" if late_outcome == "contacted" else "applied"]

    row = await _household_row(session, hid)
    assert row.decision == "stay"
    assert row.reasons == ["attachment_to_home"]
    assert row.needs == ["information"]
    assert row.consent_to_share is True
    assert row.last_outcome == "contacted"
    assert row.last_visit_at == newer_at


async def test_an_old_household_edit_arriving_last_does_not_overwrite_a_newer_one(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    pcode = await ensure_settlement(session)
    await make_settlement(session, OTHER_SETTLEMENT)
    first = await make_phone(client, session, settlements=[pcode])
    second = await make_phone(client, session, settlements=[pcode])
    hid = uuid.uuid4()
    created = household(hid, observed_at=now() - timedelta(days=2), address="вул. Стара, 1")
    newer = {
        "id": str(hid),
        "address": "вул. Нова, 2",
        "members": 4,
        "observed_at": (now() - timedelta(hours=1)).isoformat(),
        "base_version": 1,
    }
    older = {
        "id": str(hid),
        "settlement": OTHER_SETTLEMENT,
        "address": "вул. Проміжна, 3",
        "members": 1,
        "head_name": "Інша Особа",
        "observed_at": (now() - timedelta(hours=3)).isoformat(),
        "base_version": 1,
    }
    assert await _pushed(client, first, first.batch(households=[created])) == ["applied"]
    assert await _pushed(client, first, first.batch(households=[newer])) == ["applied"]
    # The older edit was made on the same base version, so the fields both changed are a
    # conflict for a supervisor; the newer values stay, and the fields only the older edit
    # touched (settlement, head name) are newer than the creation and do apply.
    assert await _pushed(client, second, second.batch(households=[older])) == ["conflict"]

    row = await _household_row(session, hid)
    assert row.address == "вул. Нова, 2"
    assert row.members == 4
    assert row.head_name == "Інша Особа"
    assert row.settlement_pcode == OTHER_SETTLEMENT


async def test_visits_that_arrive_before_their_household_still_open_a_decision_conflict(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    pcode = await ensure_settlement(session)
    first = await make_phone(client, session, settlements=[pcode])
    second = await make_phone(client, session, settlements=[pcode])
    hid = uuid.uuid4()
    stay = visit(hid, visited_at=now() - timedelta(hours=3), decision="stay")
    leave = visit(
        hid,
        visited_at=now() - timedelta(hours=2),
        decision="leave",
        reasons=["shelling_or_attacks"],
    )
    # Both workers' visits arrive before the household they are about.
    assert await _pushed(client, first, first.batch(visits=[stay])) == ["pending"]
    assert await _pushed(client, second, second.batch(visits=[leave])) == ["pending"]
    assert await _pushed(client, first, first.batch(households=[household(hid)])) == ["applied"]

    row = await _household_row(session, hid)
    assert row.decision == "leave"
    # Had the household arrived first, these two visits would open a decision conflict.
    conflicts = await read_fresh(session, select(Conflict).where(col(Conflict.household_id) == hid))
    assert [
        (c.field, {x["item_id"] for x in await candidates(session, c.id)}) for c in conflicts
    ] == [("decision", {stay["id"], leave["id"]})]
