"""Bad input to the supervisors' and partners' calls is a clear 4xx, never a 500, on both
databases. An admin calls them: no settlement scope stops a value before the database."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import Role
from tests.factories import assert_problem, bearer, make_user, tokens_for
from tests.review.conftest import World


def token(*values: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(values))).decode()


def raw_token(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


HOSTILE_GETS = [
    ("/api/v1/households", {"address": "Центр\x00альна"}),
    ("/api/v1/households", {"settlement": "UA63080\x0013001"}),
    ("/api/v1/households", {"after": token("A", "b", 5)}),
    ("/api/v1/households", {"after": token("UA6308013001", "a\x00", str(uuid.uuid4()))}),
    ("/api/v1/households", {"after": token(1, 2, 3)}),
    ("/api/v1/households", {"after": "not base64 at all!"}),
    ("/api/v1/visits", {"after": token("yesterday", str(uuid.uuid4()))}),
    ("/api/v1/visits", {"after": token("0001-01-01T00:00:00+05:00", str(uuid.uuid4()))}),
    ("/api/v1/visits", {"recorded_by": "o.k\x00"}),
    ("/api/v1/conflicts", {"after": token("2026-11-20T10:00:00", str(uuid.uuid4()))}),
    ("/api/v1/households/duplicates", {"settlement": "UA6308013001\x00"}),
    ("/api/v1/settlements/UA63%00/summary", {}),
    ("/api/v1/exports/households", {"settlement": "UA63\x00"}),
    ("/api/v1/exports/households", {"hromada": "UA63080\x00"}),
    ("/api/v1/audit", {"actor": "a\x00"}),
    ("/api/v1/audit", {"action": "auth.\x00"}),
    ("/api/v1/audit", {"entity_id": "\x00"}),
    ("/api/v1/audit", {"cursor": raw_token("0001-01-01T00:00:00+05:00|1")}),
    ("/api/v1/audit", {"cursor": raw_token("9999-12-31T23:00:00-05:00|1")}),
]


@pytest.fixture
async def admin(client: httpx.AsyncClient, session: AsyncSession) -> dict[str, str]:
    user = await make_user(session, Role.admin)
    return bearer((await tokens_for(client, user))["access_token"])


@pytest.mark.parametrize(("path", "params"), HOSTILE_GETS)
async def test_hostile_queries_get_a_clear_4xx(
    client: httpx.AsyncClient, admin: dict[str, str], path: str, params: dict[str, str]
) -> None:
    response = await client.get(path, params=params, headers=admin)
    assert 400 <= response.status_code < 500, response.text
    body = response.json()
    assert body["status"] == response.status_code


async def test_the_far_end_of_the_calendar_is_no_overflow(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    response = await client.get(
        "/api/v1/exports/households",
        params={"format": "jsonl", "date_to": "9999-12-31", "date_from": "0001-01-01"},
        headers=admin,
    )
    assert response.status_code == 200, response.text


async def test_a_tiny_distance_turns_the_location_check_off(world: World) -> None:
    await world.household(address="вул. Тиха, 1", location={"lat": 49.71, "lon": 37.61})
    await world.household(address="вул. Тиха, 2", location={"lat": 49.71, "lon": 37.61})
    for distance in ("5e-324", "1e-305", "0"):
        response = await world.get(
            "/households/duplicates", settlement="UA6308013001", distance_m=distance
        )
        assert response.status_code == 200, response.text
        assert response.json() == []
    near = await world.get("/households/duplicates", settlement="UA6308013001", distance_m="1")
    assert [p["reasons"] for p in near.json()] == [["within 0 m"]]


async def test_a_decision_resolution_of_the_wrong_type_is_422(world: World) -> None:
    from tests.review.test_acts import _disagreement

    await _disagreement(world)
    [conflict] = (await world.get("/conflicts")).json()["items"]
    for value in ([1], {"a": 1}, 5, None):
        response = await world.post(
            f"/conflicts/{conflict['id']}/resolve", {"value": value, "note": "n"}
        )
        assert [e["field"] for e in assert_problem(response, 422)["errors"]] == ["value"]
