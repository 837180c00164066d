"""Pull on both databases: paging, incremental pulls, scope, tombstones and cursors
(docs/PROTOCOL.md, "Pull"; guarantees 4 and 5). All data is synthetic."""

from __future__ import annotations

import asyncio
import base64
import uuid
from dataclasses import replace
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import delete, event, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.auth.models import Device, Role, User
from app.core.config import Settings
from app.core.types import utcnow
from app.households.models import Household
from app.main import create_app
from app.settlements import service as settlements
from app.sync import cursor as cursors
from app.sync import feed
from tests.databases import PG_ADMIN_DSN
from tests.factories import assert_problem, make_settlement, read_fresh, tokens_for
from tests.sync.helpers import Phone, household, make_phone, now, push, visit

A, B, C = "UA6308013001", "UA6308013002", "UA6308013003"


async def pull(
    client: httpx.AsyncClient, phone: Phone, cursor: str | None = None, limit: int = 500
) -> httpx.Response:
    params: dict[str, Any] = {"limit": limit}
    if cursor is not None:
        params["cursor"] = cursor
    return await client.get("/api/v1/sync/pull", params=params, headers=phone.headers)


async def pull_all(
    client: httpx.AsyncClient, phone: Phone, cursor: str | None = None, limit: int = 500
) -> tuple[list[dict[str, Any]], str]:
    """Every page from the cursor until `has_more` is false; the pages and the last cursor."""
    pages = []
    for _ in range(1000):
        response = await pull(client, phone, cursor, limit)
        assert response.status_code == 200, response.text
        page = response.json()
        pages.append(page)
        cursor = page["cursor"]
        if not page["has_more"]:
            assert cursor is not None
            return pages, cursor
    raise AssertionError("the feed never ended")


def household_ids(pages: list[dict[str, Any]]) -> list[str]:
    return [h["id"] for page in pages for h in page["households"]]


async def add_households(
    client: httpx.AsyncClient, phone: Phone, settlement: str, count: int
) -> list[str]:
    items = [household(settlement=settlement, address=f"вул. Тестова, {i}") for i in range(count)]
    pushed = await push(client, phone, phone.batch(households=items))
    assert pushed.statuses() == ["applied"] * count
    return [item["id"] for item in items]


@pytest.fixture
async def places(session: AsyncSession) -> list[str]:
    for pcode in (A, B, C):
        await make_settlement(session, pcode)
    await session.commit()
    return [A, B, C]


@pytest.fixture
async def phone(client: httpx.AsyncClient, session: AsyncSession, places: list[str]) -> Phone:
    return await make_phone(client, session, settlements=[A])


async def test_paging_from_empty_gives_exactly_the_assigned_households_once(
    client: httpx.AsyncClient, phone: Phone
) -> None:
    mine = await add_households(client, phone, A, 23)
    await add_households(client, phone, B, 5)

    pages, _ = await pull_all(client, phone, limit=7)

    assert len(pages) >= 4  # 23 households and a settlement, 7 a page
    assert all(page["has_more"] for page in pages[:-1])
    assert pages[-1]["has_more"] is False
    ids = household_ids(pages)
    assert len(ids) == len(set(ids)), "a household came twice"
    assert sorted(ids) == sorted(mine)
    assert [s["pcode"] for p in pages for s in p["settlements"]] == [A]
    assert all(h["settlement"] == A for p in pages for h in p["households"])
    assert all(not page["tombstones"] for page in pages)


async def test_a_pulled_household_is_the_canonical_state(
    client: httpx.AsyncClient, phone: Phone, session: AsyncSession
) -> None:
    [hid] = await add_households(client, phone, A, 1)
    await push(client, phone, phone.batch(visits=[visit(hid, decision="leave", reasons=[])]))

    pages, _ = await pull_all(client, phone)

    [pulled] = [h for p in pages for h in p["households"]]
    [stored] = await read_fresh(session, select(Household))
    assert pulled["version"] == stored.version
    assert pulled["decision"] == stored.decision == "leave"
    assert pulled["address"] == stored.address == "вул. Тестова, 0"
    assert "field_stamps" not in pulled
    assert "review" not in pulled


async def test_an_incremental_pull_returns_exactly_what_changed(
    client: httpx.AsyncClient, phone: Phone
) -> None:
    ids = await add_households(client, phone, A, 10)
    _, cursor = await pull_all(client, phone)

    changed = ids[2:5]
    await push(client, phone, phone.batch(visits=[visit(h) for h in changed]))
    pages, cursor = await pull_all(client, phone, cursor)
    assert sorted(household_ids(pages)) == sorted(changed)
    assert [h["decision"] for p in pages for h in p["households"]] == ["stay"] * 3

    pages, _ = await pull_all(client, phone, cursor)
    assert household_ids(pages) == []


async def test_a_household_changed_twice_comes_once_in_its_latest_state(
    client: httpx.AsyncClient, phone: Phone
) -> None:
    [hid] = await add_households(client, phone, A, 1)
    _, cursor = await pull_all(client, phone)
    early = now() - timedelta(minutes=30)
    await push(client, phone, phone.batch(visits=[visit(hid, decision="stay", visited_at=early)]))
    await push(client, phone, phone.batch(visits=[visit(hid, decision="leave", reasons=[])]))

    pages, _ = await pull_all(client, phone, cursor)
    assert [(h["id"], h["decision"]) for p in pages for h in p["households"]] == [(hid, "leave")]


async def test_a_worker_never_receives_another_settlements_household(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone
) -> None:
    other = await make_phone(client, session, settlements=[B])
    theirs = await add_households(client, other, B, 4)
    _, cursor = await pull_all(client, phone)
    await push(client, other, other.batch(visits=[visit(h) for h in theirs]))

    first, _ = await pull_all(client, phone)
    later, _ = await pull_all(client, phone, cursor)
    assert household_ids(first) == []
    assert household_ids(later) == []
    their_pages, _ = await pull_all(client, other)
    assert sorted(household_ids(their_pages)) == sorted(theirs)


async def test_removing_an_assignment_sends_a_tombstone_and_stops_the_feed(
    client: httpx.AsyncClient, session: AsyncSession, places: list[str]
) -> None:
    phone = await make_phone(client, session, settlements=[A, B])
    in_a = await add_households(client, phone, A, 3)
    in_b = await add_households(client, phone, B, 3)
    pages, cursor = await pull_all(client, phone)
    assert sorted(household_ids(pages)) == sorted(in_a + in_b)

    await settlements.unassign(session, phone.user.id, [B], username=phone.user.username)
    await session.commit()
    await push(client, phone, phone.batch(visits=[visit(h) for h in in_a + in_b]))

    pages, cursor = await pull_all(client, phone, cursor)
    tombstones = [t for p in pages for t in p["tombstones"]]
    assert tombstones == [
        {"kind": "settlement", "id": B, "reason": "unassigned", "merged_into": None}
    ]
    assert sorted(household_ids(pages)) == sorted(in_a)
    # Told once: the next cursor no longer holds B.
    pages, _ = await pull_all(client, phone, cursor)
    assert [t for p in pages for t in p["tombstones"]] == []


async def test_a_settlement_assigned_later_is_caught_up_from_the_start(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone
) -> None:
    in_a = await add_households(client, phone, A, 2)
    in_c = await add_households(client, phone, C, 9)
    _, cursor = await pull_all(client, phone)

    await settlements.assign(session, phone.user.id, [C], username=phone.user.username)
    await session.commit()
    pages, cursor = await pull_all(client, phone, cursor, limit=4)
    assert sorted(household_ids(pages)) == sorted(in_c)
    assert [s["pcode"] for p in pages for s in p["settlements"]] == [C]

    # Joined to the main stream: later changes in A and C both come, once.
    await push(client, phone, phone.batch(visits=[visit(h) for h in in_a[:1] + in_c[:1]]))
    pages, _ = await pull_all(client, phone, cursor)
    assert sorted(household_ids(pages)) == sorted(in_a[:1] + in_c[:1])


async def test_a_household_that_moves_away_comes_as_a_tombstone(
    client: httpx.AsyncClient, phone: Phone
) -> None:
    [hid] = await add_households(client, phone, A, 1)
    _, cursor = await pull_all(client, phone)
    moved = household(uuid.UUID(hid), settlement=B, observed_at=now(), base_version=1)
    assert (await push(client, phone, phone.batch(households=[moved]))).statuses() == ["applied"]

    pages, cursor = await pull_all(client, phone, cursor)
    assert household_ids(pages) == []
    assert [t for p in pages for t in p["tombstones"]] == [
        {"kind": "household", "id": hid, "reason": "moved", "merged_into": None}
    ]
    # Back in A: the household again, not its tombstone.
    back = household(uuid.UUID(hid), settlement=A, observed_at=now() + timedelta(seconds=1))
    await push(client, phone, phone.batch(households=[back]))
    pages, _ = await pull_all(client, phone, cursor)
    assert household_ids(pages) == [hid]
    assert [t for p in pages for t in p["tombstones"]] == []


def replay(replica: dict[str, dict[str, Any]], pages: list[dict[str, Any]]) -> None:
    """Apply pages as a phone does: each page's tombstones, then its households."""
    for page in pages:
        for tombstone in page["tombstones"]:
            if tombstone["kind"] == "settlement":
                for hid in [h for h, v in replica.items() if v["settlement"] == tombstone["id"]]:
                    del replica[hid]
            else:
                replica.pop(tombstone["id"], None)
        for item in page["households"]:
            replica[item["id"]] = item


async def test_a_move_between_two_held_settlements_keeps_the_household_on_any_page_split(
    client: httpx.AsyncClient, session: AsyncSession, places: list[str]
) -> None:
    phone = await make_phone(client, session, settlements=[A, B])
    [hid] = await add_households(client, phone, A, 1)
    replica: dict[str, dict[str, Any]] = {}
    pages, cursor = await pull_all(client, phone)
    replay(replica, pages)
    moved = household(uuid.UUID(hid), settlement=B, observed_at=now(), base_version=1)
    await push(client, phone, phone.batch(households=[moved]))

    pages, _ = await pull_all(client, phone, cursor, limit=1)  # one change a page
    replay(replica, pages)
    assert [(h["id"], h["settlement"]) for h in replica.values()] == [(hid, B)]


async def test_sensitive_reasons_reach_supervisors_only(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone
) -> None:
    [hid] = await add_households(client, phone, A, 1)
    reasons = ["attachment_to_home", "fear_of_conscription"]
    await push(client, phone, phone.batch(visits=[visit(hid, reasons=reasons)]))
    supervisor = await make_phone(client, session, settlements=[A], role=Role.supervisor)

    worker_pages, _ = await pull_all(client, phone)
    supervisor_pages, _ = await pull_all(client, supervisor)
    assert [h["reasons"] for p in worker_pages for h in p["households"]] == [["attachment_to_home"]]
    assert [h["reasons"] for p in supervisor_pages for h in p["households"]] == [reasons]


async def test_a_supervisor_with_no_assignment_pulls_everything(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone
) -> None:
    ids = await add_households(client, phone, A, 2) + await add_households(client, phone, C, 2)
    supervisor = await make_phone(client, session, role=Role.supervisor)

    pages, _ = await pull_all(client, supervisor)
    assert sorted(household_ids(pages)) == sorted(ids)
    assert sorted(s["pcode"] for p in pages for s in p["settlements"]) == [A, B, C]


async def test_partners_cannot_pull(
    client: httpx.AsyncClient, session: AsyncSession, places: list[str]
) -> None:
    partner = await make_phone(client, session, settlements=[A], role=Role.partner)
    assert_problem(await pull(client, partner), 403)


def _tamper(cursor: str) -> str:
    payload, tag = cursor.split(".")
    document = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    document["m"]["p"] = [A, B, C]  # claim more settlements
    forged = base64.urlsafe_b64encode(orjson.dumps(document)).rstrip(b"=").decode()
    return f"{forged}.{tag}"


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(_tamper, id="payload-changed"),
        pytest.param(lambda c: c[:-2] + ("AA" if not c.endswith("AA") else "BB"), id="tag"),
        pytest.param(lambda c: "not-a-cursor", id="garbage"),
        pytest.param(lambda c: c.split(".")[0], id="unsigned"),
        pytest.param(lambda c: "Кириличний.курсор\u0000", id="cyrillic-nul"),
    ],
)
async def test_a_tampered_cursor_is_400_not_a_resync(
    client: httpx.AsyncClient, phone: Phone, spoil: Any
) -> None:
    await add_households(client, phone, A, 2)
    _, cursor = await pull_all(client, phone)

    response = await pull(client, phone, spoil(cursor))
    problem = assert_problem(response, 400)
    assert problem["errors"][0]["field"] == "cursor"


async def test_another_accounts_cursor_is_400(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone
) -> None:
    other = await make_phone(client, session, settlements=[A])
    _, cursor = await pull_all(client, other)
    problem = assert_problem(await pull(client, phone, cursor), 400)
    assert "another account" in problem["errors"][0]["message"]


async def test_a_cursor_from_another_server_key_is_400(
    client: httpx.AsyncClient, phone: Phone, app: FastAPI
) -> None:
    other_key = SecretStr("another-key-" + "y" * 32)
    settings = app.state.settings.model_copy(update={"secret_key": other_key})
    cursor = cursors.encode(
        settings,
        cursors.Cursor(
            phone.user.id, Role.field_worker, cursors.Stream(cursors.START, frozenset({A}))
        ),
    )
    assert_problem(await pull(client, phone, cursor), 400)


async def test_a_cursor_from_before_the_prune_mark_is_410(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone
) -> None:
    [hid] = await add_households(client, phone, A, 1)
    _, old = await pull_all(client, phone)
    moved = household(uuid.UUID(hid), settlement=B, observed_at=now(), base_version=1)
    await push(client, phone, phone.batch(households=[moved]))
    _, fresh = await pull_all(client, phone)

    assert await feed.prune_tombstones(session, utcnow() + timedelta(seconds=1)) == 1
    await session.commit()

    assert_problem(await pull(client, phone, old), 410)
    response = await pull(client, phone, fresh)
    assert response.status_code == 200, response.text
    assert (await pull(client, phone)).status_code == 200


async def test_limits_outside_1_to_5000_are_422(client: httpx.AsyncClient, phone: Phone) -> None:
    for limit in (0, 5001):
        problem = assert_problem(await pull(client, phone, limit=limit), 422)
        assert "limit" in str(problem["errors"])


async def test_a_pull_is_gzipped_when_asked_and_records_the_device(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone
) -> None:
    await add_households(client, phone, A, 20)
    long_ago = utcnow() - timedelta(days=3)
    await session.execute(
        update(Device).where(col(Device.id) == phone.device_id).values(last_seen_at=long_ago)
    )
    await session.commit()

    response = await client.get(
        "/api/v1/sync/pull",
        headers={**phone.headers, "accept-encoding": "gzip"},
    )
    assert response.headers["content-encoding"] == "gzip"
    assert len(household_ids([response.json()])) == 20  # httpx inflated it

    [device] = await read_fresh(session, select(Device).where(col(Device.id) == phone.device_id))
    assert device.last_seen_at is not None
    assert utcnow() - device.last_seen_at < timedelta(minutes=1)


async def test_a_write_to_a_pulled_row_outside_the_push_still_moves_it_in_the_feed(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone
) -> None:
    """The feed position is stamped by the database, so any writer is followed."""
    [hid] = await add_households(client, phone, A, 1)
    _, cursor = await pull_all(client, phone)
    await session.execute(
        update(Household).where(col(Household.id) == uuid.UUID(hid)).values(address="вул. Нова, 2")
    )
    await session.commit()

    pages, _ = await pull_all(client, phone, cursor)
    assert [h["address"] for p in pages for h in p["households"]] == ["вул. Нова, 2"]


def _set_address(household_id: str, address: str) -> Any:
    return (
        update(Household)
        .where(col(Household.id) == uuid.UUID(household_id))
        .values(address=address)
    )


async def test_a_change_committed_late_under_a_lower_number_is_not_skipped(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone, backend: str
) -> None:
    """The pitfall of the protocol: transaction 1 takes feed number n and is still open
    when transaction 2 takes n+1 and commits. A pull in between must not move its cursor
    past n, or the change of transaction 1 would never reach the phone."""
    if backend != "postgresql":
        pytest.skip("SQLite runs one writer at a time: a second writer cannot commit first")
    first, second = await add_households(client, phone, A, 2)
    _, cursor = await pull_all(client, phone)

    engine = session.bind
    async with engine.connect() as slow, engine.connect() as fast:  # type: ignore[union-attr]
        await slow.execute(
            update(Household)
            .where(col(Household.id) == uuid.UUID(first))
            .values(address="повільна")
        )
        await fast.execute(
            update(Household).where(col(Household.id) == uuid.UUID(second)).values(address="швидка")
        )
        await fast.commit()
        during, cursor = await pull_all(client, phone, cursor)
        await slow.commit()
    after, _ = await pull_all(client, phone, cursor)

    seen = {h["id"]: h["address"] for p in during + after for h in p["households"]}
    assert seen == {first: "повільна", second: "швидка"}
    # While the slow writer was open, nothing past its number was handed out.
    assert household_ids(during) == []


async def test_a_transaction_open_in_another_database_does_not_hold_the_feed_back(
    client: httpx.AsyncClient, phone: Phone, backend: str
) -> None:
    """The horizon is this database's oldest writer in flight: a long transaction of
    another database on the same server (another service, a migration, autovacuum's
    analyze) must not stop phones from getting changes."""
    if backend != "postgresql":
        pytest.skip("SQLite has no other databases sharing its writers")
    [hid] = await add_households(client, phone, A, 1)
    _, cursor = await pull_all(client, phone)
    elsewhere = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        open_transaction = elsewhere.transaction()
        await open_transaction.start()
        await elsewhere.fetchval("SELECT pg_current_xact_id()")  # holds a transaction id
        await push(client, phone, phone.batch(visits=[visit(hid, decision="leave", reasons=[])]))

        pages, _ = await pull_all(client, phone, cursor)
        assert [h["decision"] for p in pages for h in p["households"]] == ["leave"]
        await open_transaction.rollback()
    finally:
        await elsewhere.close()


async def test_a_move_back_committed_under_a_lower_transaction_id_keeps_the_household(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone, backend: str
) -> None:
    """Feed order is transaction-id order, not commit order. Transaction X starts first;
    Y moves the household from A to B (leaving a tombstone in A) and commits; X then moves
    it back to A and commits. X's row comes before Y's tombstone in the feed, and the
    household, in A, must stay on the phone."""
    if backend != "postgresql":
        pytest.skip("SQLite runs one writer at a time: a second writer cannot commit first")
    household_id, other_id = await add_households(client, phone, A, 2)
    replica: dict[str, dict[str, Any]] = {}
    pages, cursor = await pull_all(client, phone)
    replay(replica, pages)

    def move(to: str) -> Any:
        return (
            update(Household)
            .where(col(Household.id) == uuid.UUID(household_id))
            .values(settlement_pcode=to)
        )

    engine = session.bind
    async with engine.connect() as x, engine.connect() as y:  # type: ignore[union-attr]
        await x.execute(_set_address(other_id, "вул. Перша, 1"))  # X takes its id first
        await y.execute(move(B))  # files a tombstone in A (a trigger)
        await y.commit()
        await x.execute(move(A))
        await x.commit()

    pages, _ = await pull_all(client, phone, cursor, limit=1)
    replay(replica, pages)
    assert sorted(replica) == sorted([household_id, other_id])
    assert replica[household_id]["settlement"] == A


async def test_merged_and_deleted_households_come_as_tombstones_whoever_writes_them(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone
) -> None:
    """Tombstones are filed by the database, so a merge or delete by any code reaches
    phones."""
    survivor, merged, deleted = await add_households(client, phone, A, 3)
    _, cursor = await pull_all(client, phone)
    await session.execute(
        update(Household)
        .where(col(Household.id) == uuid.UUID(merged))
        .values(merged_into=uuid.UUID(survivor))
    )
    await session.execute(delete(Household).where(col(Household.id) == uuid.UUID(deleted)))
    await session.commit()

    pages, _ = await pull_all(client, phone, cursor)
    assert household_ids(pages) == []
    assert sorted(
        ((t["id"], t["reason"], t["merged_into"]) for p in pages for t in p["tombstones"]),
        key=str,
    ) == sorted([(merged, "merged", survivor), (deleted, "deleted", None)], key=str)


async def test_a_supervisor_moving_between_everything_and_a_list_gets_both_directions(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone
) -> None:
    in_a = await add_households(client, phone, A, 2)
    in_c = await add_households(client, phone, C, 3)
    supervisor = await make_phone(client, session, role=Role.supervisor)
    _, cursor = await pull_all(client, supervisor)  # everything

    user = supervisor.user
    await settlements.assign(session, user.id, [A], username=user.username)
    await session.commit()
    pages, cursor = await pull_all(client, supervisor, cursor)
    gone = sorted(t["id"] for p in pages for t in p["tombstones"] if t["kind"] == "settlement")
    assert gone == [B, C]
    assert household_ids(pages) == []

    await settlements.unassign(session, user.id, [A], username=user.username)
    await session.commit()
    pages, cursor = await pull_all(client, supervisor, cursor, limit=2)
    assert sorted(household_ids(pages)) == sorted(in_c)  # caught up; A was never dropped
    assert sorted(s["pcode"] for p in pages for s in p["settlements"]) == [B, C]

    await push(client, phone, phone.batch(visits=[visit(h) for h in in_a + in_c]))
    pages, _ = await pull_all(client, supervisor, cursor)
    assert sorted(household_ids(pages)) == sorted(in_a + in_c)


async def test_a_cursor_ahead_of_the_server_is_410(
    client: httpx.AsyncClient, phone: Phone, app: FastAPI
) -> None:
    """As after the database was restored from an older copy: changes would sort below
    the cursor and never be sent."""
    await add_households(client, phone, A, 1)
    ahead = cursors.Cursor(
        phone.user.id, Role.field_worker, cursors.Stream((2**40, 5), frozenset({A}))
    )
    problem = assert_problem(
        await pull(client, phone, cursors.encode(app.state.settings, ahead)), 410
    )
    assert "ahead" in problem["detail"]


async def test_a_cursor_from_before_a_role_change_is_410(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone
) -> None:
    _, cursor = await pull_all(client, phone)
    await session.execute(
        update(User).where(col(User.id) == phone.user.id).values(role=Role.supervisor)
    )
    await session.commit()
    promoted = replace(
        phone, token=(await tokens_for(client, phone.user, phone.device_id))["access_token"]
    )
    problem = assert_problem(await pull(client, promoted, cursor), 410)
    assert "role" in problem["detail"]


async def test_an_oversized_cursor_is_400(client: httpx.AsyncClient, phone: Phone) -> None:
    problem = assert_problem(await pull(client, phone, "A" * 40_000 + ".AAAA"), 400)
    assert problem["errors"][0]["field"] == "cursor"


async def test_a_page_can_finish_the_catch_up_and_go_on_with_the_main_stream(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone
) -> None:
    in_a = await add_households(client, phone, A, 2)
    in_c = await add_households(client, phone, C, 3)
    _, cursor = await pull_all(client, phone)
    await settlements.assign(session, phone.user.id, [C], username=phone.user.username)
    await session.commit()
    await push(client, phone, phone.batch(visits=[visit(in_a[0])]))

    # Settlement C and its 3 households (catch-up), then A's change (main): 5 entries.
    response = await pull(client, phone, cursor, limit=5)
    page = response.json()
    assert sorted(household_ids([page])) == sorted([in_a[0], *in_c])
    assert page["has_more"] is False
    again, _ = await pull_all(client, phone, page["cursor"])
    assert household_ids(again) == []


async def test_a_cursor_survives_a_restart(
    client: httpx.AsyncClient, phone: Phone, settings: Settings
) -> None:
    """Nothing of a cursor lives in the server's memory: a new server process (here a new
    app on the same database and key) takes it."""
    ids = await add_households(client, phone, A, 3)
    _, cursor = await pull_all(client, phone)
    await push(client, phone, phone.batch(visits=[visit(ids[1])]))

    restarted = create_app(settings)
    try:
        transport = httpx.ASGITransport(app=restarted)
        async with httpx.AsyncClient(transport=transport, base_url="http://restarted") as other:
            pages, _ = await pull_all(other, phone, cursor)
    finally:
        await restarted.state.engine.dispose()
    assert household_ids(pages) == [ids[1]]


async def test_a_page_takes_the_same_statements_for_5_or_50_households(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone, app: FastAPI
) -> None:
    """No per-row queries: the statements a first pull runs do not grow with its size."""
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    engine = app.state.engine.sync_engine
    counts = []
    for size in (5, 50):
        other = await make_phone(client, session, settlements=[B] if size == 5 else [C])
        await add_households(client, other, B if size == 5 else C, size)
        event.listen(engine, "before_cursor_execute", count)
        try:
            pages, _ = await pull_all(client, other, limit=5000)
        finally:
            event.remove(engine, "before_cursor_execute", count)
        assert len(household_ids(pages)) == size
        counts.append(len(statements))
        statements.clear()
    assert counts[0] == counts[1]


async def test_a_pull_waits_for_a_write_in_flight_and_brings_what_committed_behind_it(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone, backend: str
) -> None:
    """Guarantee 4 as worded: a change committed before the pull began is in that pull,
    even when an older transaction was still open then (it is waited for)."""
    if backend != "postgresql":
        pytest.skip("SQLite runs one writer at a time: a second writer cannot commit first")
    first, second = await add_households(client, phone, A, 2)
    _, cursor = await pull_all(client, phone)

    engine = session.bind
    async with engine.connect() as slow, engine.connect() as fast:  # type: ignore[union-attr]
        await slow.execute(_set_address(first, "повільна"))
        await fast.execute(_set_address(second, "швидка"))
        await fast.commit()
        pulling = asyncio.create_task(pull_all(client, phone, cursor))
        await asyncio.sleep(0.3)
        assert not pulling.done(), "the pull did not wait for the write in flight"
        await slow.commit()
        pages, _ = await pulling

    seen = {h["id"]: h["address"] for p in pages for h in p["households"]}
    assert seen == {first: "повільна", second: "швидка"}
