"""Exports over HTTP on both databases: what partners get and never get, read back with
real third-party readers (libhxl, openpyxl, a GeoJSON model), pseudonyms, suppression,
roles and the audit log."""

from __future__ import annotations

import csv
import io
import uuid
import zipfile
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import hxl
import openpyxl
import orjson
import pytest
from fastapi import FastAPI
from geojson_pydantic import Feature, FeatureCollection, Point
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.auth.models import Role
from app.auth.service import Principal
from app.exports import repository
from app.exports.repository import Filters
from app.exports.service import open_export, suppress
from app.visits.models import Visit
from tests.factories import (
    assert_problem,
    audit_events,
    bearer,
    make_settlement,
    make_user,
    tokens_for,
)
from tests.sync.helpers import Phone, household, make_phone, now, push, visit

A, B = "UA6308013001", "UA6308013002"
#: A GeoJSON FeatureCollection of points, or of features without a place.
Collection = FeatureCollection[Feature[Point, dict[str, Any]]]
FORMATS = ("csv", "xlsx", "geojson", "jsonl")

#: What a partner must never receive: seeded into the data below.
SECRETS = {
    "head_name": "Шевченко Марія Секретна",
    "phone": "+380671234567",
    "address": "вул. Таємна, 77",
    "notes": "Ключ під килимком",
    "reason_note": "Боїться мобілізації сина",
    "destination": "Дніпро, у сестри",
    "lat": "49.712345",
    "lon": "37.616789",
}
SENSITIVE = "fear_of_conscription"


@dataclass
class Seeded:
    client: httpx.AsyncClient
    worker: Phone
    consenting: list[str]
    refusing: str
    supervisor: str
    partner: str
    other_partner: str

    async def export(
        self, token: str, kind: str = "households", file_format: str = "csv", **params: Any
    ) -> httpx.Response:
        return await self.client.get(
            f"/api/v1/exports/{kind}",
            params={"format": file_format, **params},
            headers=bearer(token),
        )


async def _token(client: httpx.AsyncClient, session: AsyncSession, role: Role, **kw: Any) -> str:
    user = await make_user(session, role, **kw)
    return (await tokens_for(client, user))["access_token"]


@pytest.fixture
async def seeded(client: httpx.AsyncClient, session: AsyncSession) -> Seeded:
    await make_settlement(session, A)
    await make_settlement(session, B)
    worker = await make_phone(client, session, settlements=[A])
    consenting, items, visits = [], [], []
    for i in range(6):
        hid = uuid.uuid4()
        items.append(
            household(
                hid,
                address=f"{SECRETS['address']}-{i}",
                head_name=SECRETS["head_name"],
                phone=SECRETS["phone"],
                notes=SECRETS["notes"],
                members=3 + i * 2,
                members_elderly=i,
                location={
                    "lat": float(SECRETS["lat"]),
                    "lon": float(SECRETS["lon"]),
                    "accuracy_m": 5,
                },
            )
        )
        visits.append(
            visit(
                hid,
                decision="stay",
                reasons=["attachment_to_home", SENSITIVE],
                reason_note=SECRETS["reason_note"],
                notes=SECRETS["notes"],
                needs=["transport"],
                consent_to_share=True,
            )
        )
        consenting.append(str(hid))
    refusing = uuid.uuid4()
    items.append(household(refusing, address="вул. Відмова, 1"))
    visits.append(
        visit(
            refusing,
            decision="leave",
            reasons=["shelling_or_attacks"],
            leave_mode="own_means",
            destination=SECRETS["destination"],
            consent_to_share=False,
        )
    )
    pushed = await push(client, worker, worker.batch(households=items, visits=visits))
    assert "rejected" not in pushed.statuses(), pushed.body
    return Seeded(
        client=client,
        worker=worker,
        consenting=consenting,
        refusing=str(refusing),
        supervisor=await _token(client, session, Role.supervisor, settlements=[A]),
        partner=await _token(client, session, Role.partner),
        other_partner=await _token(client, session, Role.partner),
    )


def _xlsx_text(content: bytes) -> str:
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        return "".join(archive.read(name).decode() for name in archive.namelist())


def _records(file_format: str, content: bytes) -> list[dict[str, Any]]:
    """The rows of an export, read back with the readers partners use."""
    if file_format == "csv":
        dataset = hxl.data(io.BytesIO(content), hxl.InputOptions(allow_local=True))
        tags = [column.display_tag for column in dataset.columns]
        assert "#meta+id" in tags
        assert "#indicator+evac_decision" in tags
        header = next(csv.reader(io.StringIO(content.decode())))
        return [dict(zip(header, row.values, strict=True)) for row in dataset]
    if file_format == "xlsx":
        sheet = openpyxl.load_workbook(io.BytesIO(content), read_only=True).active
        assert sheet is not None
        rows = list(sheet.iter_rows(values_only=True))
        header, tags = rows[0], rows[1]
        assert "#meta +id" in tags
        return [dict(zip(header, row, strict=True)) for row in rows[2:]]
    if file_format == "geojson":
        collection = Collection.model_validate_json(content)
        return [dict(feature.properties or {}) for feature in collection.features]
    return [orjson.loads(line) for line in content.splitlines()]


@pytest.mark.parametrize("file_format", FORMATS)
async def test_a_partner_export_holds_no_personal_data_sensitive_reason_or_refusing_household(
    seeded: Seeded, file_format: str
) -> None:
    response = await seeded.export(seeded.partner, "households", file_format)
    assert response.status_code == 200, response.text
    raw = _xlsx_text(response.content) if file_format == "xlsx" else response.content.decode()
    for name, secret in SECRETS.items():
        assert secret not in raw, name
    assert SENSITIVE not in raw
    for internal in [*seeded.consenting, seeded.refusing]:
        assert internal not in raw
    records = _records(file_format, response.content)
    assert len(records) == len(seeded.consenting)  # the refusing household is left out
    assert int(response.headers["x-export-rows"]) == len(records)
    first = records[0]
    assert first["decision"] == "stay"
    assert "attachment_to_home" in str(first["reasons"])
    assert str(first["last_visit"]).startswith(str(now().isocalendar()[0]))
    assert "-W" in str(first["last_visit"])
    assert {str(r["members"]) for r in records} >= {"3", "5", "7", "8+"}


@pytest.mark.parametrize("file_format", FORMATS)
async def test_a_supervisor_export_holds_everything_so_the_check_above_can_fail(
    seeded: Seeded, file_format: str
) -> None:
    response = await seeded.export(seeded.supervisor, "households", file_format)
    assert response.status_code == 200, response.text
    raw = _xlsx_text(response.content) if file_format == "xlsx" else response.content.decode()
    assert SECRETS["head_name"] in raw
    assert SECRETS["phone"] in raw
    assert SENSITIVE in raw
    assert seeded.refusing in raw
    assert len(_records(file_format, response.content)) == 7


async def test_a_supervisor_may_ask_for_protection(seeded: Seeded) -> None:
    response = await seeded.export(seeded.supervisor, "households", "csv", protected="true")
    assert response.status_code == 200, response.text
    assert SECRETS["head_name"] not in response.text
    assert len(_records("csv", response.content)) == len(seeded.consenting)


async def test_geojson_places_partner_rows_at_the_settlement_centroid_at_most(
    seeded: Seeded,
) -> None:
    response = await seeded.export(seeded.partner, "households", "geojson")
    collection = Collection.model_validate_json(response.content)
    points = {tuple(f.geometry.coordinates) for f in collection.features if f.geometry}
    assert points == {(37.62, 49.71)}
    exact = await seeded.export(seeded.supervisor, "households", "geojson")
    assert (37.616789, 49.712345) in {
        tuple(f.geometry.coordinates)
        for f in Collection.model_validate_json(exact.content).features
        if f.geometry
    }


async def test_pseudonyms_are_stable_per_partner_and_differ_between_partners(
    seeded: Seeded,
) -> None:
    async def ids(token: str) -> list[str]:
        response = await seeded.export(token, "households", "jsonl")
        return sorted(r["household"] for r in _records("jsonl", response.content))

    first, again, other = (
        await ids(seeded.partner),
        await ids(seeded.partner),
        await ids(seeded.other_partner),
    )
    assert first == again
    assert set(first).isdisjoint(other)
    assert set(first).isdisjoint(seeded.consenting)
    assert len(set(first)) == len(seeded.consenting)


async def test_the_settlement_summary_counts_and_suppresses_small_numbers(seeded: Seeded) -> None:
    full = _records(
        "jsonl", (await seeded.export(seeded.supervisor, "settlements", "jsonl")).content
    )
    [row] = [r for r in full if r["adm4_code"] == A]
    assert row["households"] == 7
    assert row["decision_stay"] == 6
    assert row["decision_leave"] == 1
    assert row["reason_fear_of_conscription"] == 6
    assert row["need_transport"] == 6
    assert row["people"] == sum(3 + i * 2 for i in range(6)) + 2

    protected = _records(
        "jsonl", (await seeded.export(seeded.partner, "settlements", "jsonl")).content
    )
    [small] = [r for r in protected if r["adm4_code"] == A]
    assert small["households"] == 7
    assert small["decision_leave"] is None  # 1 is below k = 5
    assert small["decision_stay"] is None  # else it would be 7 - 6 - 0 - 0
    parts = [small[f"decision_{d}"] for d in ("leave", "stay", "undecided", "no_decision")]
    assert parts.count(None) >= 2
    assert small["reason_fear_of_conscription"] == 6


def test_no_suppressed_cell_is_a_row_total_minus_the_visible_cells() -> None:
    names = ("households", "decision_leave", "decision_stay", "decision_undecided",
             "decision_no_decision")  # fmt: skip
    cases = [
        dict(zip(names, counts, strict=True))
        for counts in [(40, 3, 30, 7, 0), (12, 0, 12, 0, 0), (9, 1, 2, 6, 0), (3, 3, 0, 0, 0),
                       (25, 4, 0, 21, 0), (30, 4, 4, 22, 0)]
    ]  # fmt: skip
    for cells in cases:
        out = suppress(dict(cells), 5)
        for name, value in cells.items():
            if 0 < value < 5:
                assert out[name] is None, (cells, out)
        if out["households"] is None:
            assert set(out.values()) == {None}, (cells, out)
            continue
        parts = list(names[1:])
        visible = sum(out[name] or 0 for name in parts)
        for name in parts:
            if out[name] is None:
                assert out["households"] - visible != cells[name], (cells, out)


@pytest.mark.parametrize("kind", ["households", "visits", "settlements"])
async def test_field_workers_get_403_on_every_export(
    seeded: Seeded, client: httpx.AsyncClient, kind: str
) -> None:
    assert_problem(await seeded.export(seeded.worker.token, kind), 403)


async def test_partners_get_403_on_visits_and_on_turning_protection_off(seeded: Seeded) -> None:
    assert_problem(await seeded.export(seeded.partner, "visits"), 403)
    assert_problem(await seeded.export(seeded.partner, "households", protected="false"), 403)


async def test_every_export_is_audited_with_its_rows_and_whether_it_held_pii(
    seeded: Seeded, session: AsyncSession
) -> None:
    await seeded.export(seeded.partner, "households", "csv", settlement=A)
    await seeded.export(seeded.supervisor, "visits", "xlsx")
    partner_event, supervisor_event = await audit_events(session, "export")
    assert partner_event.after == {
        "kind": "households",
        "format": "csv",
        "filters": {"settlement": A},
        "rows": len(seeded.consenting),
        "protected": True,
        "pii": False,
    }
    assert supervisor_event.after is not None
    assert supervisor_event.after["rows"] == 7
    assert supervisor_event.after["pii"] is True


async def test_a_supervisor_exports_only_its_settlements(
    seeded: Seeded, client: httpx.AsyncClient, session: AsyncSession
) -> None:
    other = await make_phone(client, session, settlements=[B])
    await push(client, other, other.batch(households=[household(settlement=B)]))
    rows = _records(
        "jsonl", (await seeded.export(seeded.supervisor, "households", "jsonl")).content
    )
    assert {r["adm4_code"] for r in rows} == {A}
    assert_problem(await seeded.export(seeded.supervisor, "households", settlement=B), 403)


async def test_as_of_gives_the_state_the_server_knew_then(seeded: Seeded) -> None:
    before = now()
    later = visit(seeded.consenting[0], decision="leave", visited_at=now())
    await push(seeded.client, seeded.worker, seeded.worker.batch(visits=[later]))

    async def decision(**params: Any) -> str:
        response = await seeded.export(seeded.supervisor, "households", "jsonl", **params)
        [row] = [
            r for r in _records("jsonl", response.content) if r["household"] == seeded.consenting[0]
        ]
        return str(row["decision"])

    assert await decision() == "leave"
    assert await decision(as_of=before.isoformat()) == "stay"
    empty = await seeded.export(
        seeded.supervisor, "households", "jsonl", as_of=(before - timedelta(days=1)).isoformat()
    )
    assert empty.content == b""
    naive = await seeded.export(
        seeded.supervisor, "households", "jsonl", as_of="2026-11-20T10:00:00"
    )
    assert [e["field"] for e in assert_problem(naive, 422)["errors"]] == ["as_of"]


async def test_as_of_counts_only_the_corrections_the_server_had_then(seeded: Seeded) -> None:
    """A correction received after `as_of` does not yet replace the visit it corrects."""
    household_id = seeded.consenting[1]
    leaving = visit(household_id, decision="leave", reasons=[], visited_at=now())
    await push(seeded.client, seeded.worker, seeded.worker.batch(visits=[leaving]))
    between = now()
    correction = visit(
        household_id, visited_at=now() - timedelta(minutes=1), corrects=leaving["id"]
    )
    await push(seeded.client, seeded.worker, seeded.worker.batch(visits=[correction]))

    async def decision(**params: Any) -> str:
        response = await seeded.export(seeded.supervisor, "households", "csv", **params)
        [row] = [r for r in _records("csv", response.content) if r["household"] == household_id]
        return str(row["decision"])

    assert await decision(as_of=between.isoformat()) == "leave"
    assert await decision() == correction["decision"] == "stay"

    async def counts(**params: Any) -> dict[str, bool]:
        response = await seeded.export(seeded.supervisor, "visits", "csv", **params)
        return {
            str(row["visit"]): row["counts"] == "true"
            for row in _records("csv", response.content)
            if row["visit"] in (leaving["id"], correction["id"])
        }

    assert await counts(as_of=between.isoformat()) == {leaving["id"]: True}
    assert await counts() == {leaving["id"]: False, correction["id"]: True}


async def test_visit_level_export_for_supervisors(seeded: Seeded) -> None:
    response = await seeded.export(seeded.supervisor, "visits", "csv")
    records = _records("csv", response.content)
    assert len(records) == 7
    assert {r["recorded_by"] for r in records} == {seeded.worker.user.username}
    assert SECRETS["reason_note"] in response.text


async def test_filters_narrow_the_rows(seeded: Seeded) -> None:
    async def count(**params: Any) -> int:
        response = await seeded.export(seeded.supervisor, "households", "jsonl", **params)
        assert response.status_code == 200, response.text
        return len(_records("jsonl", response.content))

    today = now().date()
    assert await count() == 7
    assert await count(decision="leave") == 1
    assert await count(hromada="UA6308013") == 7
    assert await count(hromada="UA6308011") == 0
    assert await count(date_from=today.isoformat(), date_to=today.isoformat()) == 7
    assert await count(date_from=(today + timedelta(days=1)).isoformat()) == 0
    assert await count(date_to=(today - timedelta(days=1)).isoformat()) == 0
    visits = await seeded.export(seeded.supervisor, "visits", "jsonl", decision="leave")
    assert len(_records("jsonl", visits.content)) == 1


async def test_the_count_and_the_rows_come_from_one_snapshot(
    seeded: Seeded, app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A household pushed between the count and the first row is in neither."""
    counted = repository.count

    async def count_then_push(session: AsyncSession, query: Any) -> int:
        total = await counted(session, query)
        late = household(settlement=A, address="вул. Пізня, 1")
        pushed = await push(client, seeded.worker, seeded.worker.batch(households=[late]))
        assert pushed.statuses() == ["applied"]
        return total

    monkeypatch.setattr(repository, "count", count_then_push)
    me = (await client.get("/api/v1/auth/me", headers=bearer(seeded.supervisor))).json()
    principal = Principal(uuid.UUID(me["id"]), me["username"], "", Role.supervisor, None)
    export = await open_export(
        app.state.sessionmaker, app.state.settings, principal, "households", "jsonl", Filters()
    )
    body = b"".join([chunk async for chunk in export.chunks])
    assert export.rows == 7
    assert len(body.splitlines()) == 7


async def test_protected_exports_refuse_filters_that_could_single_out_a_household(
    seeded: Seeded,
) -> None:
    monday = now().date() - timedelta(days=now().date().weekday())
    sunday = monday + timedelta(days=6)
    for kind, params, field in [
        ("households", {"as_of": now().isoformat()}, "as_of"),
        ("households", {"date_from": (monday + timedelta(days=1)).isoformat()}, "date_from"),
        ("households", {"date_to": monday.isoformat()}, "date_to"),
        ("settlements", {"date_from": monday.isoformat()}, "date_from"),
        ("settlements", {"as_of": now().isoformat()}, "as_of"),
    ]:
        response = await seeded.export(seeded.partner, kind, "csv", **params)
        assert [e["field"] for e in assert_problem(response, 422)["errors"]] == [field], params
    weeks = await seeded.export(
        seeded.partner,
        "households",
        "jsonl",
        date_from=monday.isoformat(),
        date_to=sunday.isoformat(),
    )
    assert weeks.status_code == 200, weeks.text
    assert len(_records("jsonl", weeks.content)) == len(seeded.consenting)


async def test_a_withdrawn_consent_holds_in_every_protected_export(seeded: Seeded) -> None:
    withdrawn = seeded.consenting[0]
    later = visit(withdrawn, decision="stay", consent_to_share=False)
    await push(seeded.client, seeded.worker, seeded.worker.batch(visits=[later]))
    rows = _records("jsonl", (await seeded.export(seeded.partner, "households", "jsonl")).content)
    assert len(rows) == len(seeded.consenting) - 1
    protected_visits = await seeded.export(seeded.supervisor, "visits", "jsonl", protected="true")
    visits = _records("jsonl", protected_visits.content)
    assert len(visits) == len(seeded.consenting) - 1  # the refusing and the withdrawn: none


def test_hidden_cells_of_a_partition_never_sum_to_less_than_2k() -> None:
    out = suppress(
        {"households": 10, "decision_leave": 1, "decision_stay": 1, "decision_undecided": 8,
         "decision_no_decision": 0},
        5,
    )  # fmt: skip
    assert out["decision_undecided"] is None  # 10 - 8 = 2 would make both hidden ones 1


async def test_xlsx_is_not_gzipped_on_the_wire_and_csv_is(seeded: Seeded) -> None:
    """XLSX is a zip already: asked with `Accept-Encoding: gzip`, it is sent as it is
    (gzip would cost CPU and save nothing), while text formats are compressed."""
    responses = {
        file_format: await seeded.client.get(
            "/api/v1/exports/households",
            params={"format": file_format},
            headers={**bearer(seeded.supervisor), "accept-encoding": "gzip"},
        )
        for file_format in ("xlsx", "csv")
    }
    assert [r.status_code for r in responses.values()] == [200, 200]
    assert len(responses["xlsx"].content) > 1024  # over GZipMiddleware's minimum_size
    assert "content-encoding" not in responses["xlsx"].headers
    assert responses["csv"].headers["content-encoding"] == "gzip"
    assert zipfile.ZipFile(io.BytesIO(responses["xlsx"].content)).testzip() is None


@pytest.mark.parametrize("file_format", ["csv", "jsonl"])
async def test_a_visit_export_says_which_visits_count_in_the_fold(
    seeded: Seeded, session: AsyncSession, file_format: str
) -> None:
    """`counts` is false for a visit replaced by a correction of its household that is
    not rejected, and for a rejected visit; true for the rest. (CSV is written by the
    database on PostgreSQL, JSON Lines by Python.)"""
    worker = seeded.worker
    mine, other = household(), household()
    wrong = visit(mine["id"], decision="leave", reasons=[], visited_at=now() - timedelta(hours=3))
    fixed = visit(mine["id"], visited_at=now() - timedelta(hours=2), corrects=wrong["id"])
    kept = visit(mine["id"], visited_at=now() - timedelta(hours=1))
    undone = visit(mine["id"], visited_at=now(), corrects=kept["id"])  # rejected below
    target = visit(other["id"], decision="leave", reasons=[])
    stray = visit(mine["id"], corrects=target["id"])  # names another household's visit
    batch = worker.batch(households=[mine, other], visits=[wrong, fixed, kept, undone, stray])
    assert "rejected" not in (await push(seeded.client, worker, batch)).statuses()
    assert (await push(seeded.client, worker, worker.batch(visits=[target]))).statuses() == [
        "applied"
    ]
    await session.execute(
        update(Visit)
        .where(col(Visit.id) == uuid.UUID(undone["id"]))
        .values(review_state="rejected")
    )
    await session.commit()

    response = await seeded.export(seeded.supervisor, "visits", file_format)
    assert response.status_code == 200, response.text
    counts = {
        str(row["visit"]): str(row["counts"]).lower() == "true"
        for row in _records(file_format, response.content)
    }
    expected = {
        wrong["id"]: False,
        fixed["id"]: True,
        kept["id"]: True,
        undone["id"]: False,
        target["id"]: True,
        stray["id"]: True,
    }
    assert {id_: counts[id_] for id_ in expected} == expected
