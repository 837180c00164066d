"""What supervisors can find, and what they cannot: filters, paging, scope and roles.
Both databases."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from types import SimpleNamespace
from typing import Any, get_args

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import Role
from app.review.router import Need
from app.review.service import duplicate_pairs, normalised_address
from app.visits.codes import NEED_CODES
from tests.factories import assert_problem, bearer, make_user, tokens_for
from tests.review.conftest import A, B, World
from tests.sync.helpers import make_phone, now


async def all_pages(world: World, path: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    after = None
    for _ in range(100):
        query = {**params, **({"after": after} if after else {})}
        response = await world.get(path, **query)
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        after = page["next"]
        if after is None:
            return items
    raise AssertionError("the list never ended")


async def test_household_filters_each_select_the_right_households(world: World) -> None:
    leave = await world.household(address="вул. Центральна, 3")
    stay = await world.household(address="ВУЛ. ЦЕНТРАЛЬНА, 5")
    never = await world.household(address="пров. Тихий, 1")
    await world.visit(world.worker, leave, decision="leave", needs=["transport"])
    await world.visit(world.worker, stay, decision="stay", visited_at=now() - timedelta(days=9))
    conflicted = await world.household(address="вул. Польова, 2")
    await world.visit(
        world.worker, conflicted, decision="stay", visited_at=now() - timedelta(hours=2)
    )
    await world.visit(world.other_worker, conflicted, decision="leave")

    async def ids(**params: Any) -> set[str]:
        return {h["id"] for h in await all_pages(world, "/households", **params)}

    assert await ids() == {leave, stay, never, conflicted}
    assert await ids(decision="leave") == {leave, conflicted}
    assert await ids(decision="none") == {never}
    assert await ids(need="transport") == {leave}
    assert await ids(address="центральна") == {leave, stay}  # any case, Cyrillic too
    assert await ids(address="%") == set()  # a wildcard is a plain character
    assert await ids(has_open_conflict=True) == {conflicted}
    assert await ids(has_open_conflict=False) == {leave, stay, never}
    since = (now() - timedelta(days=3)).date().isoformat()
    assert await ids(not_visited_since=since) == {stay, never}
    assert await ids(settlement=A, decision="stay") == {stay}
    flagged = (await world.get("/visits", household_id=stay)).json()["items"][0]["id"]
    await world.post(f"/visits/{flagged}/review", {"state": "flagged", "note": "перевірити"})
    assert await ids(review_state="flagged") == {stay}
    [row] = [h for h in await all_pages(world, "/households") if h["id"] == conflicted]
    assert row["open_conflicts"] == 1


async def test_keyset_pages_hold_every_household_once_in_order(world: World) -> None:
    made = {await world.household(address=f"вул. Тестова, {i % 3}") for i in range(7)}
    pages = []
    after = None
    while True:
        response = await world.get("/households", limit=2, **({"after": after} if after else {}))
        page = response.json()
        pages.append(page["items"])
        after = page["next"]
        if after is None:
            break
    items = [h for page in pages for h in page]
    assert all(len(page) <= 2 for page in pages)
    keys = [(h["settlement"], h["address"], h["id"]) for h in items]
    assert keys == sorted(keys)
    assert len(items) == len({h["id"] for h in items}) == 7
    assert {h["id"] for h in items} == made
    bad = await world.get("/households", after="not-a-token")
    assert [e["field"] for e in assert_problem(bad, 400)["errors"]] == ["after"]


async def test_visit_list_pages_newest_first_and_filters_by_worker(world: World) -> None:
    home = await world.household()
    for hours in (5, 4, 3, 2, 1):
        phone = world.worker if hours % 2 else world.other_worker
        await world.visit(
            phone, home, decision="undecided", visited_at=now() - timedelta(hours=hours)
        )
    visits = await all_pages(world, "/visits", limit=2)
    times = [v["visited_at"] for v in visits]
    assert times == sorted(times, reverse=True)
    assert len(visits) == 5
    mine = await all_pages(world, "/visits", recorded_by=world.worker.user.username)
    assert len(mine) == 3
    assert {v["recorded_by"] for v in mine} == {world.worker.user.username}
    window = await all_pages(
        world,
        "/visits",
        visited_from=(now() - timedelta(hours=3, minutes=30)).isoformat(),
        visited_to=(now() - timedelta(hours=1, minutes=30)).isoformat(),
    )
    assert len(window) == 2
    naive = await world.get("/visits", visited_from="2026-11-20T10:00:00")
    assert [e["field"] for e in assert_problem(naive, 422)["errors"]] == ["visited_from"]


async def test_visits_waiting_for_a_household_are_listed_to_its_workers_supervisors(
    world: World, client: httpx.AsyncClient, session: AsyncSession
) -> None:
    missing = uuid.uuid4()
    waiting = await world.visit(world.worker, str(missing))
    assert waiting["result"]["status"] == "pending"
    [listed] = (await world.get("/visits/pending")).json()["items"]
    assert listed["id"] == waiting["item"]["id"]
    assert listed["fold_state"] == "pending"
    # A supervisor of another settlement does not see it.
    other = await make_user(session, Role.supervisor, settlements=[B])
    token = (await tokens_for(client, other))["access_token"]
    response = await client.get("/api/v1/visits/pending", headers=bearer(token))
    assert response.json()["items"] == []
    # When the household arrives, the visit is folded and leaves the list.
    await world.household(id=str(missing))
    assert (await world.get("/visits/pending")).json()["items"] == []


async def test_a_supervisor_sees_and_acts_only_in_its_settlements(world: World) -> None:
    theirs = await world.household(world.worker_b, settlement=B, address="вул. Чужа, 1")
    seen = await world.visit(world.worker_b, theirs, decision="stay")
    ours = await world.household(address="вул. Чужа, 1")

    assert [h["id"] for h in await all_pages(world, "/households")] == [ours]
    assert_problem(await world.get("/households", settlement=B), 403)
    assert_problem(await world.get(f"/households/{theirs}"), 404)
    assert (await world.get("/visits")).json()["items"] == []
    assert_problem(
        await world.post(f"/visits/{seen['item']['id']}/review", {"state": "rejected"}), 404
    )
    assert_problem(
        await world.post(f"/households/{ours}/merge", {"duplicate_id": theirs, "note": "x"}), 404
    )
    assert_problem(
        await world.post(f"/households/{theirs}/merge", {"duplicate_id": ours, "note": "x"}), 404
    )
    assert_problem(await world.get("/households/duplicates", settlement=B), 403)
    assert_problem(await world.get("/conflicts", settlement=B), 403)


async def test_a_supervisors_list_excludes_other_settlements_conflicts(
    world: World, client: httpx.AsyncClient, session: AsyncSession
) -> None:
    second_b = await make_phone(client, session, settlements=[B])
    home = await world.household(world.worker_b, settlement=B)
    await world.visit(world.worker_b, home, decision="stay", visited_at=now() - timedelta(hours=1))
    clash = await world.visit(second_b, home, decision="leave")
    assert clash["result"]["status"] == "conflict"
    assert (await world.get("/conflicts")).json()["items"] == []
    admin = await make_user(session, Role.admin)
    admin_token = (await tokens_for(client, admin))["access_token"]
    listed = await client.get("/api/v1/conflicts", headers=bearer(admin_token))
    assert [c["household_id"] for c in listed.json()["items"]] == [home]


#: An id in the calls below; fixed, so that every test process collects the same test ids.
ANY_ID = uuid.UUID("3f1c2b9e-0d5a-4c7e-9b1a-2e6f8d4c0a17")
OTHER_ID = uuid.UUID("7a2d4e6f-1b3c-4d5e-8f9a-0b1c2d3e4f5a")

REVIEW_CALLS = [
    ("GET", "/api/v1/households", None),
    ("GET", f"/api/v1/households/{ANY_ID}", None),
    ("GET", f"/api/v1/households/duplicates?settlement={A}", None),
    (
        "POST",
        f"/api/v1/households/{ANY_ID}/merge",
        {"duplicate_id": str(OTHER_ID), "note": "x"},
    ),
    ("GET", "/api/v1/visits", None),
    ("GET", "/api/v1/visits/pending", None),
    ("POST", f"/api/v1/visits/{ANY_ID}/review", {"state": "approved"}),
    ("GET", "/api/v1/conflicts", None),
    ("GET", f"/api/v1/conflicts/{ANY_ID}", None),
    ("POST", f"/api/v1/conflicts/{ANY_ID}/resolve", {"value": "stay", "note": "x"}),
]


@pytest.mark.parametrize("role", [Role.field_worker, Role.partner])
@pytest.mark.parametrize(("method", "path", "body"), REVIEW_CALLS)
async def test_field_workers_and_partners_get_403_on_every_review_call(
    client: httpx.AsyncClient,
    session: AsyncSession,
    role: Role,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    user = await make_user(session, role)
    token = (await tokens_for(client, user))["access_token"]
    response = await client.request(method, path, json=body, headers=bearer(token))
    assert_problem(response, 403)
    anonymous = await client.request(method, path, json=body)
    assert_problem(anonymous, 401)


def test_the_need_filter_offers_exactly_the_need_codes() -> None:
    assert set(get_args(Need)) == NEED_CODES


def _row(address: str, lat: float | None = None, lon: float | None = None) -> Any:
    return SimpleNamespace(
        id=uuid.uuid4(), address=address, lat=lat, lon=lon, head_name="", version=1,
        created_at=date(2026, 11, 20),
    )  # fmt: skip


def test_addresses_normalise_case_punctuation_and_abbreviations() -> None:
    assert normalised_address("вулиця  Центральна 12") == normalised_address("вул. Центральна, 12")
    assert normalised_address("ПРОВУЛОК Тихий,1") == normalised_address("пров. тихий 1")
    assert normalised_address("вул. Центральна, 12") != normalised_address("вул. Центральна, 21")


def test_duplicates_pair_same_addresses_and_near_locations_only() -> None:
    a = _row("вул. Центральна, 12", 49.71060, 37.61560)
    b = _row("вулиця Центральна 12")
    c = _row("вул. Садова, 1", 49.71068, 37.61560)  # about 9 m north of a
    d = _row("вул. Садова, 40", 49.71200, 37.61560)  # about 156 m
    e = _row("")  # an empty address matches nothing
    f = _row("")
    pairs = duplicate_pairs([a, b, c, d, e, f], distance_m=25)
    found = {frozenset((p.first["id"], p.second["id"])): p for p in pairs}
    assert set(found) == {frozenset((a.id, b.id)), frozenset((a.id, c.id))}
    assert found[frozenset((a.id, b.id))].reasons == ["same_address"]
    near = found[frozenset((a.id, c.id))]
    assert near.reasons == ["within 9 m"]
    assert near.distance_m == pytest.approx(8.9, abs=0.5)
    assert duplicate_pairs([a, c], distance_m=5) == []
