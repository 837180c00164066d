"""POST /api/v1/sync/push: retries, rejections, clocks, pending visits, conflicts, limits."""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.auth.models import Role
from app.conflicts.models import Conflict
from app.core.body_encoding import AFTER_THE_STREAM
from app.core.errors import PROBLEM_JSON
from app.households.models import Household
from app.main import create_app
from app.sync.schemas import PushResponse
from app.visits.models import Visit
from tests.conftest import make_settings
from tests.factories import read_fresh
from tests.sync.helpers import (
    Phone,
    candidates,
    ensure_settlement,
    household,
    make_phone,
    now,
    push,
    visit,
)


@pytest.fixture
async def pcode(session: AsyncSession) -> str:
    return await ensure_settlement(session)


@pytest.fixture
async def phone(client: httpx.AsyncClient, session: AsyncSession, pcode: str) -> Phone:
    return await make_phone(client, session, settlements=[pcode])


async def stored_visits(session: AsyncSession, *ids: str) -> list[Visit]:
    return await read_fresh(
        session, select(Visit).where(col(Visit.id).in_([uuid.UUID(i) for i in ids]))
    )


async def stored_household(session: AsyncSession, household_id: str | uuid.UUID) -> Household:
    rows = await read_fresh(
        session, select(Household).where(col(Household.id) == uuid.UUID(str(household_id)))
    )
    assert len(rows) == 1
    return rows[0]


async def visit_count(session: AsyncSession) -> int:
    await session.commit()
    return int(await session.scalar(sa_select(func.count()).select_from(Visit)) or 0)


async def open_conflicts(session: AsyncSession, household_id: str) -> list[Conflict]:
    return await read_fresh(
        session,
        select(Conflict).where(
            col(Conflict.household_id) == uuid.UUID(household_id), col(Conflict.status) == "open"
        ),
    )


# --- Exactly once ------------------------------------------------------------------------


async def test_a_batch_sent_twice_is_answered_identically_and_stored_once(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone
) -> None:
    h = household()
    batch = phone.batch(households=[h], visits=[visit(h["id"]), visit(h["id"], decision="leave")])
    first = await push(client, phone, batch)
    second = await push(client, phone, batch)
    assert first.response.status_code == 200, first.response.text
    # The answer is built as plain data; it must keep the documented shape.
    PushResponse.model_validate_json(first.response.content)
    assert first.statuses() == ["applied", "applied", "applied"]
    assert second.response.content == first.response.content
    assert await visit_count(session) == 2


@pytest.mark.parametrize("key", ["sent_at", "app_version", "a_key_from_a_newer_app"])
async def test_a_retry_with_a_renewed_envelope_gets_the_first_answer(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone, key: str
) -> None:
    """sent_at, the app version and unknown keys are not part of a batch's identity."""
    h = household()
    batch = phone.batch(households=[h], visits=[visit(h["id"])])
    first = await push(client, phone, batch)
    renewed = (now() + timedelta(seconds=30)).isoformat() if key == "sent_at" else "test-1.1"
    retry = await push(client, phone, {**batch, key: renewed})
    assert retry.response.status_code == 200
    assert retry.response.content == first.response.content
    assert await visit_count(session) == 1


async def test_the_same_batch_id_with_another_body_is_409(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone
) -> None:
    h = household()
    batch = phone.batch(households=[h], visits=[visit(h["id"])])
    assert (await push(client, phone, batch)).response.status_code == 200
    reused = await push(client, phone, {**batch, "visits": [visit(h["id"])]})
    assert reused.response.status_code == 409
    assert reused.response.headers["content-type"] == PROBLEM_JSON
    assert "batch_id" in reused.body["detail"]
    assert await visit_count(session) == 1


async def test_a_visit_resent_in_a_new_batch_is_duplicate(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone
) -> None:
    h = household()
    v = visit(h["id"])
    await push(client, phone, phone.batch(households=[h], visits=[v]))
    again = await push(client, phone, phone.batch(visits=[v]))
    assert again.statuses() == ["duplicate"]
    assert again.body["results"][0]["version"] == (await stored_household(session, h["id"])).version
    assert await visit_count(session) == 1


async def test_a_changed_visit_with_a_known_id_is_rejected_as_immutable(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone
) -> None:
    h = household()
    v = visit(h["id"], decision="stay")
    await push(client, phone, phone.batch(households=[h], visits=[v]))
    changed = await push(client, phone, phone.batch(visits=[{**v, "notes": "changed"}]))
    result = changed.body["results"][0]
    assert result["status"] == "rejected"
    assert result["errors"] == [
        {
            "field": "visits.0.id",
            "code": "immutable",
            "message": "a different visit with this id is stored; send a new visit with `corrects`",
        }
    ]
    assert (await stored_visits(session, v["id"]))[0].notes == ""


async def test_the_same_visit_twice_in_one_batch_is_stored_once(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone
) -> None:
    h = household()
    v = visit(h["id"])
    pushed = await push(
        client, phone, phone.batch(households=[h], visits=[v, v, {**v, "notes": "x"}])
    )
    assert pushed.statuses() == ["applied", "applied", "duplicate", "rejected"]
    assert await visit_count(session) == 1


# --- One bad item never drops the rest -----------------------------------------------------


BAD_VISITS: list[tuple[str, dict[str, Any], str, str]] = [
    ("missing outcome", {"outcome": None}, "visits.37.outcome", "literal_error"),
    ("unknown reason", {"reasons": ["cats"]}, "visits.37.reasons.0", "unknown_code"),
    (
        "naive timestamp",
        {"visited_at": "2026-11-20T09:00:00"},
        "visits.37.visited_at",
        "timezone_aware",
    ),
    ("NUL byte", {"notes": "before\x00after"}, "visits.37.notes", "nul_byte"),
    ("100 kB note", {"notes": "я" * 100_000}, "visits.37.notes", "string_too_long"),
    (
        "leave reason with stay",
        {"reasons": ["shelling_or_attacks"]},
        "visits.37.reasons.0",
        "reason_not_for_decision",
    ),
    ("other without note", {"reasons": ["other"]}, "visits.37.reason_note", "missing"),
    ("contacted, no decision", {"decision": None, "reasons": []}, "visits.37.decision", "missing"),
    ("bad household id", {"household_id": "not-a-uuid"}, "visits.37.household_id", "uuid_parsing"),
    (
        "year out of range",
        {"visited_at": "0001-01-01T00:00:00+00:00"},
        "visits.37.visited_at",
        "out_of_range",
    ),
]


@pytest.mark.parametrize(
    ("case", "change", "field", "code"), BAD_VISITS, ids=[c[0] for c in BAD_VISITS]
)
async def test_one_invalid_visit_in_a_hundred_rejects_that_one_only(
    client: httpx.AsyncClient,
    session: AsyncSession,
    phone: Phone,
    case: str,
    change: dict[str, Any],
    field: str,
    code: str,
) -> None:
    h = household()
    visits = [visit(h["id"], visited_at=now() - timedelta(minutes=100 - i)) for i in range(100)]
    visits[37] = {**visits[37], **change}
    pushed = await push(client, phone, phone.batch(households=[h], visits=visits))
    assert pushed.response.status_code == 200, pushed.response.text
    statuses = pushed.statuses()
    assert statuses[0] == "applied"
    assert statuses[38] == "rejected", case
    assert statuses.count("applied") == 100
    errors = pushed.body["results"][38]["errors"]
    assert any(e["field"] == field and e["code"] == code for e in errors), errors
    assert await visit_count(session) == 99


async def test_an_unreadable_item_is_rejected_by_position(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone
) -> None:
    h = household()
    pushed = await push(
        client, phone, phone.batch(households=[h], visits=["junk", 42, visit(h["id"])])
    )
    assert pushed.statuses() == ["applied", "rejected", "rejected", "applied"]
    assert pushed.body["results"][1]["errors"][0]["field"] == "visits.0"


async def test_cyrillic_text_round_trips_exactly(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone
) -> None:
    text = "Залишаються: «бабуся не покине корову» — ґанок, їжак, є, ʼ 🐄\u0301"
    h = household(address="вул. Грушевського, 5а")
    v = visit(h["id"], decision="stay", reasons=["other"], reason_note=text, notes=text)
    pushed = await push(client, phone, phone.batch(households=[h], visits=[v]))
    assert pushed.statuses() == ["applied", "applied"]
    stored = (await stored_visits(session, v["id"]))[0]
    assert stored.notes == text
    assert stored.reason_note == text
    assert (await stored_household(session, h["id"])).address == "вул. Грушевського, 5а"


async def test_a_lone_surrogate_is_rejected_not_a_500(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone
) -> None:
    h = household()
    batch = phone.batch(households=[h], visits=[visit(h["id"], notes="PLACEHOLDER")])
    raw = json.dumps(batch).replace("PLACEHOLDER", "\\ud800")
    response = await client.post(
        "/api/v1/sync/push",
        content=raw,
        headers={**phone.headers, "content-type": "application/json"},
    )
    assert response.status_code == 200
    result = response.json()["results"][1]
    assert result["status"] == "rejected"
    assert result["errors"][0]["code"] == "string_unicode"


async def test_an_unknown_settlement_rejects_the_household_and_its_visit_waits(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone
) -> None:
    h = household(settlement="UA6399999999")
    pushed = await push(client, phone, phone.batch(households=[h], visits=[visit(h["id"])]))
    assert pushed.statuses() == ["rejected", "pending"]
    assert pushed.body["results"][0]["errors"][0] == {
        "field": "households.0.settlement",
        "code": "unknown_code",
        "message": "'UA6399999999' is not a known settlement P-code",
    }


# --- Clocks ------------------------------------------------------------------------------


async def test_a_phone_three_hours_behind_has_its_times_corrected(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone
) -> None:
    phone.clock_skew = -timedelta(hours=3)
    visited_device = phone.clock() - timedelta(minutes=10)
    h = household(observed_at=phone.clock() - timedelta(minutes=20))
    v = visit(h["id"], visited_at=visited_device)
    pushed = await push(client, phone, phone.batch(households=[h], visits=[v]))
    assert pushed.statuses() == ["applied", "applied"]
    assert pushed.body["clock_offset_seconds"] == pytest.approx(3 * 3600, abs=30)
    stored = (await stored_visits(session, v["id"]))[0]
    assert stored.visited_at_device == visited_device.replace(
        microsecond=stored.visited_at_device.microsecond
    )
    assert stored.visited_at - stored.visited_at_device == pytest.approx(
        timedelta(hours=3), abs=timedelta(seconds=30)
    )
    assert abs(stored.visited_at - (now() - timedelta(minutes=10))) < timedelta(seconds=30)
    assert stored.clock_corrected
    assert not stored.future_clamped


async def test_a_time_still_in_the_future_is_clamped_and_flagged(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone
) -> None:
    h = household()
    v = visit(h["id"], visited_at=now() + timedelta(hours=5))
    pushed = await push(client, phone, phone.batch(households=[h], visits=[v]))
    assert pushed.statuses() == ["applied", "applied"]
    stored = (await stored_visits(session, v["id"]))[0]
    assert stored.future_clamped
    assert stored.visited_at <= now()
    assert stored.visited_at_device > now() + timedelta(hours=4)


async def test_a_small_clock_error_is_not_corrected(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone
) -> None:
    phone.clock_skew = timedelta(seconds=-30)
    h = household()
    v = visit(h["id"], visited_at=phone.clock() - timedelta(minutes=1))
    pushed = await push(client, phone, phone.batch(households=[h], visits=[v]))
    assert pushed.body["clock_offset_seconds"] == 0.0
    stored = (await stored_visits(session, v["id"]))[0]
    assert stored.visited_at == stored.visited_at_device
    assert not stored.clock_corrected


# --- Pending -----------------------------------------------------------------------------


async def test_a_visit_before_its_household_is_pending_then_folded(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone
) -> None:
    h = household()
    v = visit(h["id"], decision="leave", reasons=["evacuation_order"], needs=["transport"])
    early = await push(client, phone, phone.batch(visits=[v]))
    assert early.statuses() == ["pending"]
    assert early.body["results"][0]["version"] is None
    assert (await stored_visits(session, v["id"]))[0].fold_state == "pending"

    late = await push(client, phone, phone.batch(households=[h]))
    assert late.statuses() == ["applied"]
    state = await stored_household(session, h["id"])
    assert state.decision == "leave"
    assert state.needs == ["transport"]
    assert (await stored_visits(session, v["id"]))[0].fold_state == "folded"


async def test_household_and_visit_in_one_batch_fold_together(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone
) -> None:
    h = household(members=4)
    v = visit(h["id"], decision="stay", reasons=["caring_for_animals_or_land"], signed_refusal=True)
    pushed = await push(client, phone, phone.batch(households=[h], visits=[v]))
    state = await stored_household(session, h["id"])
    assert (state.decision, state.reasons, state.members) == (
        "stay",
        ["caring_for_animals_or_land"],
        4,
    )
    assert pushed.body["results"][1]["version"] == state.version == 1


# --- Folding -----------------------------------------------------------------------------


async def test_an_older_visit_arriving_last_does_not_overwrite_a_newer_one(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone
) -> None:
    h = household()
    newer = visit(h["id"], decision="leave", reasons=[], visited_at=now() - timedelta(hours=1))
    older = visit(h["id"], decision="stay", visited_at=now() - timedelta(days=2))
    await push(client, phone, phone.batch(households=[h], visits=[newer]))
    version = (await stored_household(session, h["id"])).version
    await push(client, phone, phone.batch(visits=[older]))
    state = await stored_household(session, h["id"])
    assert state.decision == "leave"
    assert state.version == version  # nothing changed, so no new version


@pytest.mark.parametrize("correction_first", [False, True], ids=["late", "early"])
async def test_a_correction_takes_the_corrected_visit_out_of_the_fold(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone, correction_first: bool
) -> None:
    """Whichever arrives first, the corrected visit stops counting, though it is newer."""
    h = household()
    wrong = visit(h["id"], decision="leave", reasons=[], visited_at=now() - timedelta(hours=1))
    fixed = visit(
        h["id"], decision="stay", visited_at=now() - timedelta(hours=2), corrects=wrong["id"]
    )
    first, second = (fixed, wrong) if correction_first else (wrong, fixed)
    await push(client, phone, phone.batch(households=[h], visits=[first]))
    assert (await stored_household(session, h["id"])).decision == first["decision"]
    pushed = await push(client, phone, phone.batch(visits=[second]))
    assert pushed.statuses() == ["applied"]
    assert (await stored_household(session, h["id"])).decision == "stay"


async def test_a_correction_of_another_households_visit_is_rejected(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone
) -> None:
    a, b = household(), household()
    va = visit(a["id"])
    await push(client, phone, phone.batch(households=[a, b], visits=[va]))
    pushed = await push(client, phone, phone.batch(visits=[visit(b["id"], corrects=va["id"])]))
    assert pushed.statuses() == ["rejected"]
    assert pushed.body["results"][0]["errors"][0]["code"] == "other_household"


async def test_profile_edits_change_only_the_fields_they_name(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone
) -> None:
    h = household(phone="+380000000001", members=3)
    await push(client, phone, phone.batch(households=[h]))
    edit = {"id": h["id"], "members": 5, "observed_at": now().isoformat(), "base_version": 1}
    pushed = await push(client, phone, phone.batch(households=[edit]))
    assert pushed.statuses() == ["applied"]
    state = await stored_household(session, h["id"])
    assert (state.members, state.phone, state.version) == (5, "+380000000001", 2)


# --- Conflicts ---------------------------------------------------------------------------


async def test_different_decisions_within_the_window_open_one_conflict(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone, pcode: str
) -> None:
    other = await make_phone(client, session, settlements=[pcode])
    third = await make_phone(client, session, settlements=[pcode])
    h = household()
    stay = visit(h["id"], decision="stay", visited_at=now() - timedelta(hours=3))
    leave = visit(
        h["id"],
        decision="leave",
        reasons=["shelling_or_attacks"],
        visited_at=now() - timedelta(hours=2),
    )
    await push(client, phone, phone.batch(households=[h], visits=[stay]))
    pushed = await push(client, other, other.batch(visits=[leave]))
    assert pushed.statuses() == ["conflict"]
    [conflict] = await open_conflicts(session, h["id"])
    assert pushed.body["results"][0]["conflicts"] == [str(conflict.id)]
    assert conflict.field == "decision"
    listed = {c["item_id"]: c for c in await candidates(session, conflict.id)}
    assert set(listed) == {stay["id"], leave["id"]}
    assert listed[stay["id"]]["value"] == "stay"
    assert listed[stay["id"]]["recorded_by"] == str(phone.user.id)
    assert listed[stay["id"]]["device_id"] == str(phone.device_id)
    assert listed[leave["id"]]["recorded_by"] == str(other.user.id)
    assert listed[leave["id"]]["recorded_at"] == datetime.fromisoformat(leave["visited_at"])
    # The fold still picks the latest decision.
    assert (await stored_household(session, h["id"])).decision == "leave"

    later = visit(h["id"], decision="undecided", reasons=[], visited_at=now() - timedelta(hours=1))
    third_push = await push(client, third, third.batch(visits=[later]))
    assert third_push.statuses() == ["conflict"]
    [same] = await open_conflicts(session, h["id"])
    assert same.id == conflict.id
    listed_again = await candidates(session, same.id)
    assert {c["item_id"] for c in listed_again} == {stay["id"], leave["id"], later["id"]}
    assert len(listed_again) == 3  # each candidate once


async def test_outside_the_window_the_later_decision_wins_without_conflict(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone, pcode: str
) -> None:
    other = await make_phone(client, session, settlements=[pcode])
    h = household()
    stay = visit(h["id"], decision="stay", visited_at=now() - timedelta(days=3))
    leave = visit(h["id"], decision="leave", reasons=[], visited_at=now() - timedelta(hours=1))
    await push(client, phone, phone.batch(households=[h], visits=[stay]))
    pushed = await push(client, other, other.batch(visits=[leave]))
    assert pushed.statuses() == ["applied"]
    assert await open_conflicts(session, h["id"]) == []
    assert (await stored_household(session, h["id"])).decision == "leave"


async def test_the_same_worker_changing_their_mind_is_not_a_conflict(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone
) -> None:
    h = household()
    first = visit(h["id"], decision="stay", visited_at=now() - timedelta(hours=3))
    second = visit(h["id"], decision="leave", reasons=[], visited_at=now() - timedelta(hours=2))
    pushed = await push(client, phone, phone.batch(households=[h], visits=[first, second]))
    assert pushed.statuses() == ["applied", "applied", "applied"]
    assert await open_conflicts(session, h["id"]) == []


async def test_a_stale_edit_of_a_field_someone_else_changed_opens_a_conflict(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone, pcode: str
) -> None:
    other = await make_phone(client, session, settlements=[pcode])
    h = household(address="вул. Стара, 1")
    await push(client, phone, phone.batch(households=[h]))
    base = (await stored_household(session, h["id"])).version
    theirs = {
        "id": h["id"],
        "address": "вул. Нова, 2",
        "observed_at": (now() - timedelta(minutes=3)).isoformat(),
        "base_version": base,
    }
    mine = {
        "id": h["id"],
        "address": "вул. Третя, 3",
        "observed_at": (now() - timedelta(minutes=1)).isoformat(),
        "base_version": base,
    }
    assert (await push(client, other, other.batch(households=[theirs]))).statuses() == ["applied"]
    pushed = await push(client, phone, phone.batch(households=[mine]))
    assert pushed.statuses() == ["conflict"]
    [conflict] = await open_conflicts(session, h["id"])
    assert conflict.field == "address"
    listed = await candidates(session, conflict.id)
    assert {c["value"] for c in listed} == {"вул. Нова, 2", "вул. Третя, 3"}
    assert {c["recorded_by"] for c in listed} == {
        str(other.user.id),
        str(phone.user.id),
    }
    # A fresh edit (base = current version) is not a conflict.
    current = (await stored_household(session, h["id"])).version
    fresh = {
        **mine,
        "address": "вул. Четверта, 4",
        "observed_at": now().isoformat(),
        "base_version": current,
    }
    assert (await push(client, other, other.batch(households=[fresh]))).statuses() == ["applied"]


# --- Limits, encodings and who may push ----------------------------------------------------


@pytest.fixture
async def small_app(database_url: str) -> AsyncIterator[FastAPI]:
    application = create_app(
        make_settings(database_url, batch_max_items=5, batch_max_bytes=64 * 1024)
    )
    try:
        yield application
    finally:
        await application.state.engine.dispose()


async def test_an_oversized_batch_and_a_gzip_bomb_are_413(
    small_app: FastAPI, client: httpx.AsyncClient, session: AsyncSession, phone: Phone
) -> None:
    transport = httpx.ASGITransport(app=small_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as small:
        h = household()
        too_many = phone.batch(households=[h], visits=[visit(h["id"]) for _ in range(5)])
        response = await small.post("/api/v1/sync/push", json=too_many, headers=phone.headers)
        assert response.status_code == 413
        assert response.headers["content-type"] == PROBLEM_JSON
        assert "at most 5" in response.json()["detail"]

        bomb = gzip.compress(
            b'{"batch_id": "' + b" " * (200 * 1024 * 1024) + b'"}', compresslevel=9
        )
        assert len(bomb) < 1024 * 1024
        response = await small.post(
            "/api/v1/sync/push",
            content=bomb,
            headers={
                **phone.headers,
                "content-encoding": "gzip",
                "content-type": "application/json",
            },
        )
        assert response.status_code == 413
        assert response.headers["content-type"] == PROBLEM_JSON

        big = phone.batch(
            households=[h], visits=[visit(h["id"], notes="x" * 4000) for _ in range(4)]
        )
        big["padding"] = "y" * (80 * 1024)
        response = await small.post("/api/v1/sync/push", json=big, headers=phone.headers)
        assert response.status_code == 413
    assert await visit_count(session) == 0


async def test_gzip_bodies_are_accepted_and_bad_encodings_refused(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone
) -> None:
    h = household()
    body = json.dumps(phone.batch(households=[h], visits=[visit(h["id"])])).encode()
    headers = {**phone.headers, "content-type": "application/json"}
    ok = await client.post(
        "/api/v1/sync/push",
        content=gzip.compress(body),
        headers={**headers, "content-encoding": "gzip"},
    )
    assert ok.status_code == 200, ok.text
    assert [r["status"] for r in ok.json()["results"]] == ["applied", "applied"]

    broken = await client.post(
        "/api/v1/sync/push",
        content=b"\x1f\x8b not gzip",
        headers={**headers, "content-encoding": "gzip"},
    )
    assert broken.status_code == 400
    assert broken.headers["content-type"] == PROBLEM_JSON

    brotli = await client.post(
        "/api/v1/sync/push", content=body, headers={**headers, "content-encoding": "br"}
    )
    assert brotli.status_code == 415
    assert brotli.headers["content-type"] == PROBLEM_JSON

    # More after the gzip stream (a second member, or junk) is refused, not dropped.
    for tail in (gzip.compress(b" "), b"junk"):
        followed = await client.post(
            "/api/v1/sync/push",
            content=gzip.compress(body) + tail,
            headers={**headers, "content-encoding": "gzip"},
        )
        assert followed.status_code == 400, followed.text
        assert followed.json()["detail"] == AFTER_THE_STREAM


async def test_large_responses_are_gzipped_for_clients_that_ask(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone
) -> None:
    h = household()
    batch = phone.batch(households=[h], visits=[visit(h["id"]) for _ in range(50)])
    response = await client.post(
        "/api/v1/sync/push", json=batch, headers={**phone.headers, "accept-encoding": "gzip"}
    )
    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"
    assert len(response.json()["results"]) == 51


async def test_a_token_for_device_a_pushing_as_device_b_is_403(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone
) -> None:
    h = household()
    batch = phone.batch(households=[h], visits=[visit(h["id"])])
    batch["device_id"] = str(uuid.uuid4())
    pushed = await push(client, phone, batch)
    assert pushed.response.status_code == 403
    assert pushed.response.headers["content-type"] == PROBLEM_JSON
    assert "device_id" in pushed.body["detail"]
    assert await visit_count(session) == 0


@pytest.mark.parametrize("role", [Role.partner, Role.admin])
async def test_partners_and_admins_cannot_push(
    client: httpx.AsyncClient, session: AsyncSession, pcode: str, role: Role
) -> None:
    caller = await make_phone(client, session, role=role)
    h = household()
    pushed = await push(client, caller, caller.batch(households=[h], visits=[visit(h["id"])]))
    assert pushed.response.status_code == 403


async def test_a_malformed_envelope_is_422_naming_the_field(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone
) -> None:
    batch = phone.batch()
    batch["sent_at"] = "2026-11-20T09:00:00"
    del batch["batch_id"]
    pushed = await push(client, phone, batch)
    assert pushed.response.status_code == 422
    assert pushed.response.headers["content-type"] == PROBLEM_JSON
    assert {(e["field"], e["code"]) for e in pushed.body["errors"]} == {
        ("batch_id", "missing"),
        ("sent_at", "timezone_aware"),
    }
    for junk in (b"[1, 2]", b"{not json", b"[" * 100_000):
        response = await client.post(
            "/api/v1/sync/push",
            content=junk,
            headers={**phone.headers, "content-type": "application/json"},
        )
        assert response.status_code == 422, junk[:10]
        assert response.headers["content-type"] == PROBLEM_JSON


async def test_a_push_records_the_device_sync(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone
) -> None:
    h = household()
    await push(client, phone, phone.batch(households=[h]))
    from app.auth.models import Device

    [device] = await read_fresh(session, select(Device).where(col(Device.id) == phone.device_id))
    assert device.last_sync_at is not None
    assert device.app_version == "test-1.0"


async def test_a_lost_database_is_503_with_retry_after(phone: Phone) -> None:
    down = create_app(make_settings("postgresql+asyncpg://nobody@127.0.0.1:1/none"))
    transport = httpx.ASGITransport(app=down)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        response = await c.post("/api/v1/sync/push", json=phone.batch(), headers=phone.headers)
    await down.state.engine.dispose()
    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM_JSON
    assert int(response.headers["retry-after"]) > 0


# --- Inputs found by review that must not become 500s ------------------------------------


async def test_hostile_values_are_rejected_item_by_item(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone
) -> None:
    h = household()
    await push(client, phone, phone.batch(households=[h]))
    edits = [
        {"id": h["id"], "settlement": None, "observed_at": now().isoformat()},
        {"id": h["id"], "base_version": 2**63, "observed_at": now().isoformat()},
        {"id": h["id"], "phone": "+380\x00", "observed_at": now().isoformat()},
        {"id": h["id"], "observed_at": "9999-12-31T23:59:59-01:00"},
    ]
    visits = [
        {**visit(h["id"]), "visited_at": "9999-12-31T23:59:59-01:00"},
        {**visit(h["id"]), "id": "\ud800", "outcome": "nope"},
    ]
    response = await client.post(
        "/api/v1/sync/push",
        content=json.dumps(phone.batch(households=edits, visits=visits)),  # escapes \ud800
        headers={**phone.headers, "content-type": "application/json"},
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["rejected"] * 6
    codes = [r["errors"][0]["code"] for r in results]
    assert codes[:5] == [
        "not_nullable",
        "less_than_equal",
        "nul_byte",
        "out_of_range",
        "out_of_range",
    ]
    assert results[5]["id"] == ""
    assert (await stored_household(session, h["id"])).settlement_pcode == h["settlement"]


async def test_a_body_nested_just_within_the_parsers_reach_is_a_422_not_a_500(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone
) -> None:
    """Found by fuzzing: a body the JSON parser just manages to read could be too deep to
    write out again for the batch's identity hash (a RecursionError, a 500). From too
    deep to parse down to what is accepted, every depth is a 422 or a 200."""
    headers = {**phone.headers, "content-type": "application/json"}
    for depth in range(1000, 500, -1):
        batch = phone.batch()
        batch["visits"] = "NESTED"
        body = json.dumps(batch).replace('"NESTED"', "[" + "[" * depth + "]" * depth + "]")
        response = await client.post("/api/v1/sync/push", content=body, headers=headers)
        if response.status_code == 200:
            break
        assert response.status_code == 422, (depth, response.text)
        assert response.json()["detail"] == "The body nests too deeply to be a batch."
    assert response.status_code == 200, "no depth was accepted"
    assert [r["status"] for r in response.json()["results"]] == ["rejected"]


async def test_an_ancient_sent_at_is_a_422(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone
) -> None:
    pushed = await push(client, phone, phone.batch(sent_at=datetime(1, 1, 1, tzinfo=UTC)))
    assert pushed.response.status_code == 422
    assert pushed.body["errors"][0]["field"] == "sent_at"


async def test_two_visits_cannot_correct_each_other(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone
) -> None:
    h = household()
    a_id, b_id = uuid.uuid4(), uuid.uuid4()
    a = visit(h["id"], visit_id=a_id, decision="stay", corrects=str(b_id))
    b = visit(h["id"], visit_id=b_id, decision="leave", reasons=[], corrects=str(a_id))
    pushed = await push(client, phone, phone.batch(households=[h], visits=[a, b]))
    assert pushed.statuses() == ["applied", "applied", "rejected"]
    assert pushed.body["results"][2]["errors"][0]["code"] == "invalid"
    # The first of the cycle is kept: a corrects b, which was never stored.
    assert (await stored_household(session, h["id"])).decision == "stay"


async def test_the_same_edit_twice_in_a_batch_is_a_duplicate(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone
) -> None:
    h = household()
    pushed = await push(client, phone, phone.batch(households=[h, h]))
    assert pushed.statuses() == ["applied", "duplicate"]


async def test_a_correction_naming_a_visit_of_another_household_does_not_hide_it(
    client: httpx.AsyncClient, session: AsyncSession, phone: Phone
) -> None:
    first, second = household(), household()
    target = visit(second["id"], decision="leave", reasons=[])
    stray = visit(first["id"], decision="stay", corrects=target["id"])
    await push(client, phone, phone.batch(households=[first, second], visits=[stray]))
    pushed = await push(client, phone, phone.batch(visits=[target]))
    assert pushed.statuses() == ["applied"]
    assert (await stored_household(session, second["id"])).decision == "leave"
