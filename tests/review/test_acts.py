"""Review acts change the canonical state, bump versions, reach phones on their next pull
and are audited: rejecting a visit, resolving a conflict, merging duplicates. Both
databases."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.visits.models import Visit
from tests.factories import assert_problem, audit_events, read_fresh
from tests.review.conftest import World
from tests.sync.helpers import Phone, household, now, push


async def pull_all(
    world: World, phone: Phone, cursor: str | None = None
) -> tuple[dict[str, Any], str]:
    """Every page from the cursor: the last state of each household, the tombstones, and
    the new cursor."""
    households: dict[str, Any] = {}
    tombstones: list[dict[str, Any]] = []
    for _ in range(100):
        params = {"cursor": cursor} if cursor else {}
        response = await world.client.get("/api/v1/sync/pull", params=params, headers=phone.headers)
        assert response.status_code == 200, response.text
        page = response.json()
        households.update({h["id"]: h for h in page["households"]})
        tombstones += page["tombstones"]
        cursor = page["cursor"]
        if not page["has_more"]:
            assert cursor is not None
            return {"households": households, "tombstones": tombstones}, cursor
    raise AssertionError("the feed never ended")


async def state(world: World, household_id: str) -> dict[str, Any]:
    response = await world.get(f"/households/{household_id}")
    assert response.status_code == 200, response.text
    detail: dict[str, Any] = response.json()
    return detail


# Visit review --------------------------------------------------------------------------


async def test_rejecting_a_visit_refolds_the_household_and_phones_get_it(
    world: World, session: AsyncSession
) -> None:
    home = await world.household()
    await world.visit(world.worker, home, decision="stay", visited_at=now() - timedelta(hours=2))
    leave = await world.visit(
        world.worker, home, decision="leave", visited_at=now() - timedelta(hours=1)
    )
    before = (await state(world, home))["household"]
    assert before["decision"] == "leave"
    _, cursor = await pull_all(world, world.worker)

    response = await world.post(
        f"/visits/{leave['item']['id']}/review", {"state": "rejected", "note": "Не та хата."}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["visit"]["review_state"] == "rejected"
    assert body["visit"]["in_fold"] is False
    assert body["household_version"] == before["version"] + 1

    after = await state(world, home)
    assert after["household"]["decision"] == "stay"
    assert after["household"]["version"] == before["version"] + 1
    pulled, cursor = await pull_all(world, world.worker, cursor)
    assert pulled["households"][home]["decision"] == "stay"
    assert pulled["households"][home]["version"] == before["version"] + 1

    [event] = await audit_events(session, "visit.review")
    assert event.actor_id == world.supervisor.user.id
    assert event.entity_id == leave["item"]["id"]
    assert event.reason == "Не та хата."
    assert event.before == {
        "review_state": "unreviewed",
        "review_note": "",
        "household_version": before["version"],
    }
    assert event.after is not None
    assert event.after["review_state"] == "rejected"

    # Taking the rejection back makes the visit count again.
    response = await world.post(f"/visits/{leave['item']['id']}/review", {"state": "approved"})
    assert response.status_code == 200, response.text
    assert (await state(world, home))["household"]["decision"] == "leave"
    pulled, _ = await pull_all(world, world.worker, cursor)
    assert pulled["households"][home]["decision"] == "leave"


async def test_approving_or_flagging_changes_no_state(world: World) -> None:
    home = await world.household()
    stay = await world.visit(world.worker, home, decision="stay")
    version = (await state(world, home))["household"]["version"]
    for review in ("flagged", "approved"):
        response = await world.post(f"/visits/{stay['item']['id']}/review", {"state": review})
        assert response.status_code == 200, response.text
        assert response.json()["household_version"] == version
        assert response.json()["visit"]["in_fold"] is True
    listed = await world.get("/visits", household_id=home, review_state="approved")
    assert [v["id"] for v in listed.json()["items"]] == [stay["item"]["id"]]


async def test_a_review_names_a_known_state(world: World) -> None:
    home = await world.household()
    stay = await world.visit(world.worker, home)
    response = await world.post(f"/visits/{stay['item']['id']}/review", {"state": "deleted"})
    body = assert_problem(response, 422)
    assert [e["field"] for e in body["errors"]] == ["state"]
    response = await world.post(f"/visits/{uuid.uuid4()}/review", {"state": "approved"})
    assert_problem(response, 404)


# Conflicts ------------------------------------------------------------------------------


async def _disagreement(world: World) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Two workers record stay and leave within the window: one open conflict."""
    home = await world.household()
    stay = await world.visit(
        world.worker, home, decision="stay", visited_at=now() - timedelta(hours=2)
    )
    leave = await world.visit(
        world.other_worker, home, decision="leave", visited_at=now() - timedelta(hours=1)
    )
    assert leave["result"]["status"] == "conflict"
    return home, stay, leave


async def test_resolving_a_conflict_sets_the_value_and_phones_get_it(
    world: World, session: AsyncSession
) -> None:
    home, stay, _ = await _disagreement(world)
    listed = await world.get("/conflicts")
    assert listed.status_code == 200, listed.text
    [conflict] = listed.json()["items"]
    assert conflict["household_id"] == home
    assert conflict["field"] == "decision"
    assert conflict["current_value"] == "leave"
    by_value = {c["value"]: c for c in conflict["candidates"]}
    assert set(by_value) == {"stay", "leave"}
    assert by_value["stay"]["item_id"] == stay["item"]["id"]
    assert by_value["stay"]["recorded_by"] == world.worker.user.username
    assert by_value["leave"]["recorded_by"] == world.other_worker.user.username
    _, cursor = await pull_all(world, world.worker)

    response = await world.post(
        f"/conflicts/{conflict['id']}/resolve",
        {
            "candidate_id": by_value["stay"]["id"],
            "note": "Зателефонувала: залишаються.",
            "household_version": conflict["household_version"],
        },
    )
    assert response.status_code == 200, response.text
    resolved = response.json()
    assert resolved["status"] == "resolved"
    assert resolved["resolved_by"] == world.supervisor.user.username
    assert resolved["resolution"]["value"] == "stay"
    assert resolved["household_version"] == conflict["household_version"] + 1
    assert resolved["current_value"] == "stay"

    pulled, cursor = await pull_all(world, world.worker, cursor)
    assert pulled["households"][home]["decision"] == "stay"
    assert (await world.get("/conflicts")).json()["items"] == []
    assert len((await world.get("/conflicts", status="resolved")).json()["items"]) == 1

    [event] = await audit_events(session, "conflict.resolve")
    assert event.reason == "Зателефонувала: залишаються."
    assert event.before is not None
    assert event.before["value"] == "leave"
    assert event.after is not None
    assert event.after["value"] == "stay"

    # Resolving twice is a clear 409.
    again = await world.post(
        f"/conflicts/{conflict['id']}/resolve", {"value": "leave", "note": "ще раз"}
    )
    assert_problem(again, 409)


async def test_a_resolution_holds_against_older_visits_but_not_newer_ones(world: World) -> None:
    home, _, _ = await _disagreement(world)
    [conflict] = (await world.get("/conflicts")).json()["items"]
    response = await world.post(
        f"/conflicts/{conflict['id']}/resolve", {"value": "undecided", "note": "Ще вирішують."}
    )
    assert response.status_code == 200, response.text
    # A visit made before the resolution, arriving late, does not undo it...
    await world.visit(
        world.other_worker, home, decision="leave", visited_at=now() - timedelta(minutes=30)
    )
    assert (await state(world, home))["household"]["decision"] == "undecided"
    # ...and re-folding from scratch (a rejection elsewhere) keeps it too.
    old = await world.visit(
        world.worker, home, decision="stay", visited_at=now() - timedelta(hours=5)
    )
    await world.post(f"/visits/{old['item']['id']}/review", {"state": "rejected", "note": "x"})
    assert (await state(world, home))["household"]["decision"] == "undecided"
    # A visit made after it counts.
    await world.visit(world.worker, home, decision="leave", visited_at=now())
    assert (await state(world, home))["household"]["decision"] == "leave"


async def test_a_stale_or_malformed_resolution_is_refused(world: World) -> None:
    home, _, _ = await _disagreement(world)
    [conflict] = (await world.get("/conflicts")).json()["items"]
    path = f"/conflicts/{conflict['id']}/resolve"
    stale = await world.post(
        path,
        {"value": "stay", "note": "n", "household_version": conflict["household_version"] - 1},
    )
    assert "changed since you looked" in assert_problem(stale, 409)["detail"]
    both = await world.post(path, {"value": "stay", "candidate_id": str(uuid.uuid4()), "note": "n"})
    assert [e["field"] for e in assert_problem(both, 422)["errors"]] == ["candidate_id"]
    unknown = await world.post(path, {"candidate_id": str(uuid.uuid4()), "note": "n"})
    assert [e["code"] for e in assert_problem(unknown, 422)["errors"]] == ["unknown_candidate"]
    wrong = await world.post(path, {"value": "maybe", "note": "n"})
    assert [e["field"] for e in assert_problem(wrong, 422)["errors"]] == ["value"]
    # Nothing of that changed the conflict.
    assert (await world.get(f"/conflicts/{conflict['id']}")).json()["status"] == "open"
    assert (await state(world, home))["household"]["version"] == conflict["household_version"]


async def test_a_stale_edit_conflict_takes_an_entered_value_in_the_fields_shape(
    world: World,
) -> None:
    home = await world.household(members=2)
    base = (await state(world, home))["household"]["version"]
    edit = household(
        uuid.UUID(home), members=5, base_version=base, observed_at=now() - timedelta(minutes=2)
    )
    del edit["settlement"]
    await push(world.client, world.worker, world.worker.batch(households=[edit]))
    late = household(
        uuid.UUID(home), members=3, base_version=base, observed_at=now() - timedelta(minutes=1)
    )
    del late["settlement"]
    pushed = await push(
        world.client, world.other_worker, world.other_worker.batch(households=[late])
    )
    assert pushed.statuses() == ["conflict"]
    [conflict] = (await world.get("/conflicts")).json()["items"]
    assert conflict["field"] == "members"
    bad = await world.post(f"/conflicts/{conflict['id']}/resolve", {"value": -1, "note": "n"})
    assert [e["field"] for e in assert_problem(bad, 422)["errors"]] == ["value"]
    good = await world.post(
        f"/conflicts/{conflict['id']}/resolve", {"value": 4, "note": "Порахувала."}
    )
    assert good.status_code == 200, good.text
    assert (await state(world, home))["household"]["members"] == 4


# Merging duplicates ---------------------------------------------------------------------


async def test_merging_moves_visits_tombstones_the_duplicate_and_redirects_pushes(
    world: World, session: AsyncSession
) -> None:
    first = await world.household(address="вул. Центральна, 12")
    second = await world.household(world.other_worker, address="вулиця  Центральна 12")
    await world.visit(world.worker, first, decision="stay", visited_at=now() - timedelta(hours=30))
    sent = await world.visit(
        world.other_worker, second, decision="leave", visited_at=now() - timedelta(hours=1)
    )
    suggested = await world.get("/households/duplicates", settlement="UA6308013001")
    assert suggested.status_code == 200, suggested.text
    [pair] = suggested.json()
    assert {pair["first"]["id"], pair["second"]["id"]} == {first, second}
    assert pair["reasons"] == ["same_address"]
    version = (await state(world, first))["household"]["version"]
    _, cursor = await pull_all(world, world.worker)

    response = await world.post(
        f"/households/{first}/merge", {"duplicate_id": second, "note": "Та сама хата."}
    )
    assert response.status_code == 200, response.text
    merged = response.json()
    assert merged["visits_moved"] == 1
    assert merged["already_merged"] is False
    assert merged["survivor_version"] == version + 1

    detail = await state(world, first)
    assert detail["household"]["decision"] == "leave"
    assert len(detail["visits"]) == 2
    assert detail["merged_from"] == [second]
    assert (await world.get(f"/households/{second}")).json()["household"]["merged_into"] == first
    listed = [h["id"] for h in (await world.get("/households")).json()["items"]]
    assert listed == [first]

    pulled, cursor = await pull_all(world, world.worker, cursor)
    assert pulled["households"][first]["decision"] == "leave"
    assert second not in pulled["households"]
    assert {"kind": "household", "id": second, "reason": "merged", "merged_into": first} in [
        {k: t[k] for k in ("kind", "id", "reason", "merged_into")} for t in pulled["tombstones"]
    ]

    # A phone that still holds the duplicate: its new visit lands on the survivor, and
    # the visit it sent before is still a duplicate when resent.
    late = await world.visit(world.other_worker, second, decision="stay", visited_at=now())
    assert late["result"]["status"] == "applied"
    [stored] = await read_fresh(
        session,
        select(Visit).where(Visit.id == uuid.UUID(late["item"]["id"])),  # type: ignore[arg-type]
    )
    assert str(stored.household_id) == first
    assert (await state(world, first))["household"]["decision"] == "stay"
    resent = await push(
        world.client, world.other_worker, world.other_worker.batch(visits=[sent["item"]])
    )
    assert resent.statuses() == ["duplicate"]
    # ...and so is the same visit pointed at the survivor, as a phone does after the
    # tombstone (the protocol's advice): the server moved it there too.
    repointed = {**sent["item"], "household_id": first}
    again_sent = await push(
        world.client, world.other_worker, world.other_worker.batch(visits=[repointed])
    )
    assert again_sent.statuses() == ["duplicate"]
    changed = {**repointed, "notes": "змінено"}
    refused = await push(
        world.client, world.other_worker, world.other_worker.batch(visits=[changed])
    )
    assert refused.statuses() == ["rejected"]

    # Again: nothing changes, nothing more is audited.
    again = await world.post(f"/households/{first}/merge", {"duplicate_id": second, "note": "x"})
    assert again.status_code == 200, again.text
    assert again.json()["already_merged"] is True
    [event] = await audit_events(session, "household.merge")
    assert event.entity_id == first
    assert event.reason == "Та сама хата."
    assert event.after is not None
    assert event.after["visits_moved"] == 1


async def test_merge_refuses_itself_and_merged_households(world: World) -> None:
    first = await world.household(address="вул. Садова, 1")
    second = await world.household(address="вул. Садова, 2")
    third = await world.household(address="вул. Садова, 3")
    itself = await world.post(f"/households/{first}/merge", {"duplicate_id": first, "note": "x"})
    assert [e["code"] for e in assert_problem(itself, 422)["errors"]] == ["same_household"]
    assert (
        await world.post(f"/households/{first}/merge", {"duplicate_id": second, "note": "x"})
    ).status_code == 200
    into_merged = await world.post(
        f"/households/{second}/merge", {"duplicate_id": third, "note": "x"}
    )
    assert "itself merged" in assert_problem(into_merged, 409)["detail"]
    merged_again = await world.post(
        f"/households/{third}/merge", {"duplicate_id": second, "note": "x"}
    )
    assert "already merged" in assert_problem(merged_again, 409)["detail"]
    missing = await world.post(
        f"/households/{first}/merge", {"duplicate_id": str(uuid.uuid4()), "note": "x"}
    )
    assert_problem(missing, 404)


async def test_merging_joins_open_conflicts_on_the_same_field(world: World) -> None:
    first, _, _ = await _disagreement(world)
    second, _, _ = await _disagreement(world)
    response = await world.post(f"/households/{first}/merge", {"duplicate_id": second, "note": "x"})
    assert response.status_code == 200, response.text
    [conflict] = (await world.get("/conflicts")).json()["items"]
    assert conflict["household_id"] == first
    assert len(conflict["candidates"]) == 4


async def test_merging_households_whose_visits_disagree_opens_a_conflict(world: World) -> None:
    first = await world.household(address="вул. Лісова, 7")
    second = await world.household(world.other_worker, address="вул. Лісова, 7")
    stay = await world.visit(
        world.worker, first, decision="stay", visited_at=now() - timedelta(hours=3)
    )
    leave = await world.visit(
        world.other_worker, second, decision="leave", visited_at=now() - timedelta(hours=2)
    )
    assert (await world.get("/conflicts")).json()["items"] == []
    response = await world.post(f"/households/{first}/merge", {"duplicate_id": second, "note": "x"})
    assert response.status_code == 200, response.text
    [conflict] = (await world.get("/conflicts")).json()["items"]
    assert conflict["household_id"] == first
    assert conflict["kind"] == "decision_disagreement"
    assert {c["item_id"] for c in conflict["candidates"]} == {
        stay["item"]["id"],
        leave["item"]["id"],
    }


async def test_choosing_a_visit_takes_its_reasons_with_its_decision(world: World) -> None:
    home = await world.household()
    await world.visit(
        world.worker, home, decision="stay", reasons=["attachment_to_home"],
        visited_at=now() - timedelta(hours=2),
    )  # fmt: skip
    await world.visit(
        world.other_worker, home, decision="leave", reasons=["shelling_or_attacks"],
        needs=["transport"], visited_at=now() - timedelta(hours=1),
    )  # fmt: skip
    [conflict] = (await world.get("/conflicts")).json()["items"]
    stay = next(c for c in conflict["candidates"] if c["value"] == "stay")
    response = await world.post(
        f"/conflicts/{conflict['id']}/resolve", {"candidate_id": stay["id"], "note": "n"}
    )
    assert response.status_code == 200, response.text
    state_now = (await state(world, home))["household"]
    assert state_now["decision"] == "stay"
    assert state_now["reasons"] == ["attachment_to_home"]  # not the leave reason
    assert state_now["needs"] == []


async def test_an_entered_decision_keeps_only_the_reasons_that_fit_it(world: World) -> None:
    home = await world.household()
    await world.visit(world.worker, home, decision="stay", visited_at=now() - timedelta(hours=2))
    await world.visit(
        world.other_worker, home, decision="leave", reasons=["shelling_or_attacks"],
        planned_departure=(now() + timedelta(days=2)).date().isoformat(),
        visited_at=now() - timedelta(hours=1),
    )  # fmt: skip
    [conflict] = (await world.get("/conflicts")).json()["items"]
    response = await world.post(
        f"/conflicts/{conflict['id']}/resolve", {"value": "stay", "note": "n"}
    )
    assert response.status_code == 200, response.text
    state_now = (await state(world, home))["household"]
    assert (state_now["decision"], state_now["reasons"], state_now["planned_departure"]) == (
        "stay",
        [],
        None,
    )


async def test_merging_keeps_resolved_conflicts_and_compares_only_across_the_merge(
    world: World,
) -> None:
    first, _, _ = await _disagreement(world)
    [settled] = (await world.get("/conflicts")).json()["items"]
    resolved = await world.post(
        f"/conflicts/{settled['id']}/resolve", {"value": "undecided", "note": "n"}
    )
    assert resolved.status_code == 200, resolved.text
    second = await world.household(members=9)  # no visits, so nothing new to compare
    merged = await world.post(f"/households/{first}/merge", {"duplicate_id": second, "note": "x"})
    assert merged.status_code == 200, merged.text
    assert (await world.get("/conflicts")).json()["items"] == []  # the settled one stays settled
    assert (await state(world, first))["household"]["decision"] == "undecided"


async def test_a_duplicates_settled_profile_conflict_does_not_overwrite_the_survivor(
    world: World,
) -> None:
    survivor = await world.household(members=2)
    duplicate = await world.household(members=2)
    base = (await state(world, duplicate))["household"]["version"]
    for phone, members, minutes in ((world.worker, 5, 2), (world.other_worker, 9, 1)):
        edit = household(uuid.UUID(duplicate), members=members, base_version=base,
                         observed_at=now() - timedelta(minutes=minutes))  # fmt: skip
        del edit["settlement"]
        await push(world.client, phone, phone.batch(households=[edit]))
    [conflict] = (await world.get("/conflicts")).json()["items"]
    await world.post(f"/conflicts/{conflict['id']}/resolve", {"value": 9, "note": "n"})
    merged = await world.post(
        f"/households/{survivor}/merge", {"duplicate_id": duplicate, "note": "x"}
    )
    assert merged.status_code == 200, merged.text
    assert (await state(world, survivor))["household"]["members"] == 2
