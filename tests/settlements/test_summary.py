"""GET /api/v1/settlements and /settlements/{pcode}/summary: each settlement's progress,
counted right on both databases, and seen only by those whose scope holds it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.auth.models import Role, User
from app.conflicts.models import Conflict
from app.households.models import Household
from app.settlements.models import Settlement
from app.visits import codes
from tests.factories import (
    assert_problem,
    bearer,
    make_settlement,
    make_user,
    read_fresh,
    tokens_for,
)
from tests.sync.helpers import household, make_phone, push, visit

A = "UA6308013001"
B = "UA6308013002"
C = "UA6308013003"
UNKNOWN = "UA6308099999"


def at(day: int, hour: int = 10) -> datetime:
    return datetime(2026, 3, day, hour, tzinfo=UTC)


def stored(pcode: str, **fields: Any) -> Household:
    return Household(
        id=uuid.uuid4(),
        settlement_pcode=pcode,
        address="вул. Шкільна, 7",
        head_name="Синтетична Особа",
        **fields,
    )


async def arrange(client: httpx.AsyncClient, session: AsyncSession) -> dict[str, Any]:
    """Three settlements. A holds a mix: decisions, needs, a merged duplicate, conflicts
    open and resolved, and one household that came in through a phone's push."""
    for pcode in (A, B, C):
        await make_settlement(session, pcode)
    leave_a = stored(
        A,
        decision="leave",
        reasons=["shelling_or_attacks", "children_safety"],
        needs=["transport", "medical_escort"],
        last_outcome="contacted",
        last_visit_at=at(1),
    )
    stay_a = stored(
        A,
        decision="stay",
        reasons=["attachment_to_home", "fear_of_conscription"],
        needs=["accessible_transport", "transport"],  # both: counts once for transport
        last_outcome="contacted",
        last_visit_at=at(2),
    )
    leave_b = stored(
        A,
        decision="leave",
        reasons=["shelling_or_attacks", "loss_of_utilities"],
        needs=["accommodation"],
        last_outcome="contacted",
        last_visit_at=at(1, 15),
    )
    undecided = stored(A, decision="undecided", last_outcome="contacted", last_visit_at=at(3))
    not_home = stored(A, last_outcome="not_home", last_visit_at=at(4))
    never_visited = stored(A)
    session.add_all([leave_a, stay_a, leave_b, undecided, not_home, never_visited])
    await session.flush()
    # A duplicate merged into leave_a: none of its values may count, not even its visit,
    # the latest of all.
    merged = stored(
        A,
        decision="leave",
        reasons=["shelling_or_attacks", "other"],
        needs=["transport", "cash"],
        last_outcome="contacted",
        last_visit_at=datetime.now(UTC) + timedelta(days=1),
        merged_into=leave_a.id,
    )
    in_b = stored(B, decision="stay", needs=["transport"], last_visit_at=at(5))
    session.add_all([merged, in_b])
    await session.flush()
    session.add_all(
        [
            Conflict(household_id=stay_a.id, field="decision", kind="decision_disagreement"),
            Conflict(
                household_id=leave_a.id,
                field="decision",
                kind="decision_disagreement",
                status="resolved",
                resolved_at=at(2, 12),
            ),
            # Still open on the merged duplicate: still work for a supervisor.
            Conflict(household_id=merged.id, field="address", kind="stale_edit"),
            Conflict(household_id=in_b.id, field="decision", kind="decision_disagreement"),
        ]
    )
    await session.commit()

    # One household of A as the app stores it from a phone: a stay with sensitive reasons.
    phone = await make_phone(client, session, settlements=[A])
    pushed_id = uuid.uuid4()
    result = await push(
        client,
        phone,
        phone.batch(
            households=[household(pushed_id, settlement=A)],
            visits=[
                visit(
                    pushed_id,
                    decision="stay",
                    reasons=["age_health_or_disability", "no_transport"],
                    needs=["accessible_transport"],
                )
            ],
        ),
    )
    assert result.response.status_code == 200, result.response.text
    assert result.statuses() == ["applied", "applied"], result.body
    [pushed] = await read_fresh(session, select(Household).where(col(Household.id) == pushed_id))
    assert pushed.last_visit_at is not None
    return {"last_visit_a": pushed.last_visit_at}


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def progress_a(last_visit: datetime) -> dict[str, Any]:
    return {
        "households": 7,
        "visited": 6,
        "leave": 2,
        "stay": 2,
        "undecided": 1,
        "no_decision": 2,
        "needs_transport": 3,
        "open_conflicts": 2,
        "last_visit": iso(last_visit),
    }


PROGRESS_B = {
    "households": 1,
    "visited": 1,
    "leave": 0,
    "stay": 1,
    "undecided": 0,
    "no_decision": 0,
    "needs_transport": 1,
    "open_conflicts": 1,
    "last_visit": iso(at(5)),
}

PROGRESS_C = {
    "households": 0,
    "visited": 0,
    "leave": 0,
    "stay": 0,
    "undecided": 0,
    "no_decision": 0,
    "needs_transport": 0,
    "open_conflicts": 0,
    "last_visit": None,
}


async def headers_for(client: httpx.AsyncClient, user: User) -> dict[str, str]:
    return bearer((await tokens_for(client, user))["access_token"])


def rows_by_pcode(response: httpx.Response) -> dict[str, dict[str, Any]]:
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()
    return {row["pcode"]: row for row in rows}


async def test_the_list_counts_each_settlement_and_leaves_out_merged_households(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    arranged = await arrange(client, session)
    admin = await make_user(session, Role.admin)

    response = await client.get("/api/v1/settlements", headers=await headers_for(client, admin))

    rows = rows_by_pcode(response)
    assert list(rows) == [A, B, C]  # by P-code
    assert rows[A] == {
        "pcode": A,
        "name_uk": rows[A]["name_uk"],
        "name_en": rows[A]["name_en"],
        "hromada_pcode": "UA6308013",
        "hromada_uk": "Синтетична",
        "hromada_en": "Syntetychna",
        "evacuation_ordered": False,
        "evacuation_ordered_on": None,
        "progress": progress_a(arranged["last_visit_a"]),
    }
    assert rows[A]["name_uk"].startswith("Синтетичне")
    assert rows[B]["progress"] == PROGRESS_B
    assert rows[C]["progress"] == PROGRESS_C


async def test_the_summary_has_the_list_numbers_and_every_reason_and_need(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    arranged = await arrange(client, session)
    supervisor = await make_user(session, Role.supervisor, settlements=[A])
    headers = await headers_for(client, supervisor)

    listed = rows_by_pcode(await client.get("/api/v1/settlements", headers=headers))
    response = await client.get(f"/api/v1/settlements/{A}/summary", headers=headers)

    assert response.status_code == 200, response.text
    body = response.json()
    reasons, needs = body.pop("reasons"), body.pop("needs")
    assert body == listed[A]
    assert body["progress"] == progress_a(arranged["last_visit_a"])

    given = {r["code"]: r["households"] for r in reasons if r["households"]}
    assert given == {
        "shelling_or_attacks": 2,  # not 3: the merged duplicate gave it too
        "children_safety": 1,
        "loss_of_utilities": 1,
        "attachment_to_home": 1,
        "fear_of_conscription": 1,
        "age_health_or_disability": 1,
        "no_transport": 1,
    }
    every_reason = {c.code for c in (*codes.REASONS_STAY, *codes.REASONS_LEAVE)}
    assert sorted(r["code"] for r in reasons) == sorted(every_reason)  # "other" once, at 0
    assert [r["code"] for r in reasons[:3]] == [
        "shelling_or_attacks",
        "age_health_or_disability",
        "attachment_to_home",
    ]  # most households first, then by code
    sensitive = {r["code"] for r in reasons if r["sensitive"]}
    assert sensitive == set(codes.SENSITIVE_REASONS)
    shelling = next(r for r in reasons if r["code"] == "shelling_or_attacks")
    assert shelling == {
        "code": "shelling_or_attacks",
        "en": "Shelling or attacks",
        "uk": "Обстріли чи атаки",
        "sensitive": False,
        "households": 2,
    }

    assert {n["code"]: n["households"] for n in needs if n["households"]} == {
        "transport": 2,
        "accessible_transport": 2,
        "medical_escort": 1,
        "accommodation": 1,
    }
    assert sorted(n["code"] for n in needs) == sorted(c.code for c in codes.NEEDS)


async def test_a_supervisor_assigned_to_a_sees_only_a(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    await arrange(client, session)
    supervisor = await make_user(session, Role.supervisor, settlements=[A])
    headers = await headers_for(client, supervisor)

    listed = rows_by_pcode(await client.get("/api/v1/settlements", headers=headers))
    other = await client.get(f"/api/v1/settlements/{B}/summary", headers=headers)
    own = await client.get(f"/api/v1/settlements/{A}/summary", headers=headers)

    assert list(listed) == [A]
    body = assert_problem(other, 403)
    assert B in body["detail"]
    assert own.status_code == 200, own.text


async def test_a_supervisor_without_assignments_and_an_admin_see_every_settlement(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    await arrange(client, session)
    unassigned = await make_user(session, Role.supervisor)
    admin = await make_user(session, Role.admin, settlements=[A])  # an admin's scope is all

    for user in (unassigned, admin):
        headers = await headers_for(client, user)
        listed = rows_by_pcode(await client.get("/api/v1/settlements", headers=headers))
        assert list(listed) == [A, B, C], user.role
        summary = await client.get(f"/api/v1/settlements/{B}/summary", headers=headers)
        assert summary.status_code == 200, summary.text
        assert summary.json()["progress"] == PROGRESS_B


async def test_field_workers_and_partners_are_refused(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    await make_settlement(session, A)
    worker = await make_user(session, Role.field_worker, settlements=[A])
    partner = await make_user(session, Role.partner, settlements=[A])

    for user in (worker, partner):
        headers = await headers_for(client, user)
        assert_problem(await client.get("/api/v1/settlements", headers=headers), 403)
        summary = await client.get(f"/api/v1/settlements/{A}/summary", headers=headers)
        assert_problem(summary, 403)


async def test_signed_out_callers_are_refused(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    await make_settlement(session, A)

    assert_problem(await client.get("/api/v1/settlements"), 401)
    assert_problem(await client.get(f"/api/v1/settlements/{A}/summary"), 401)


async def test_an_unknown_pcode_is_404_and_a_malformed_one_422_for_everyone(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    await make_settlement(session, A)
    admin = await make_user(session, Role.admin)
    supervisor = await make_user(session, Role.supervisor, settlements=[A])

    for user in (admin, supervisor):
        headers = await headers_for(client, user)
        response = await client.get(f"/api/v1/settlements/{UNKNOWN}/summary", headers=headers)
        assert UNKNOWN in assert_problem(response, 404)["detail"]
        # Something that is not a P-code at all is refused before any look-up.
        response = await client.get("/api/v1/settlements/not-a-pcode/summary", headers=headers)
        assert [e["field"] for e in assert_problem(response, 422)["errors"]] == ["pcode"]


async def test_a_supervisor_of_a_settlement_without_households_sees_it_with_zeros(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    """An assignment is the scope even when its settlement holds no households."""
    await arrange(client, session)
    supervisor = await make_user(session, Role.supervisor, settlements=[C])

    listed = rows_by_pcode(
        await client.get("/api/v1/settlements", headers=await headers_for(client, supervisor))
    )

    assert list(listed) == [C]
    assert listed[C]["progress"] == PROGRESS_C


async def test_the_list_takes_the_same_statements_for_3_or_30_settlements(
    client: httpx.AsyncClient, session: AsyncSession, app: FastAPI
) -> None:
    """No per-settlement queries: the statements the list runs do not grow with its rows."""
    admin = await make_user(session, Role.admin)
    headers = await headers_for(client, admin)
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    engine = app.state.engine.sync_engine
    counts = []
    for total in (3, 30):
        while len(await read_fresh(session, select(Settlement))) < total:
            place = await make_settlement(session)
            session.add(stored(place.pcode, decision="stay", needs=["transport"]))
            await session.commit()
        event.listen(engine, "before_cursor_execute", count)
        try:
            listed = rows_by_pcode(await client.get("/api/v1/settlements", headers=headers))
        finally:
            event.remove(engine, "before_cursor_execute", count)
        assert len(listed) == total
        assert all(row["progress"]["needs_transport"] == 1 for row in listed.values())
        counts.append(len(statements))
        statements.clear()
    assert counts[0] == counts[1]
