"""GET /api/v1/audit: administrators read the log, filtered, newest first, page by page;
nothing in the API changes an event."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.models import AuditEvent
from app.audit.router import router as audit_router
from app.auth.models import Role, User
from app.main import create_app
from tests.conftest import make_settings
from tests.factories import assert_problem, bearer, make_user, tokens_for

URL = "/api/v1/audit"
T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


async def add_events(session: AsyncSession, *events: AuditEvent) -> list[int]:
    """Store events as given (their times included); their ids in the order given."""
    session.add_all(events)
    await session.commit()
    return [e.id for e in events if e.id is not None]


def event(minutes: int, action: str = "user.assign", **fields: Any) -> AuditEvent:
    fields.setdefault("entity_type", "user")
    fields["entity_id"] = str(fields.get("entity_id", ""))
    return AuditEvent(occurred_at=at(minutes), action=action, **fields)


async def admin_headers(client: httpx.AsyncClient, session: AsyncSession) -> dict[str, str]:
    admin = await make_user(session, Role.admin)
    return bearer((await tokens_for(client, admin))["access_token"])


async def read(
    client: httpx.AsyncClient, headers: dict[str, str], **params: Any
) -> list[dict[str, Any]]:
    """Every event the filters match, following `next` to the end."""
    events: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(1000):
        query = dict(params, **({"cursor": cursor} if cursor else {}))
        response = await client.get(URL, params=query, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"events", "next"}
        events += body["events"]
        cursor = body["next"]
        if cursor is None:
            return events
    raise AssertionError("the pages never ended")


def ids(events: list[dict[str, Any]]) -> list[int]:
    return [e["id"] for e in events]


# A window that holds only the events the tests store, not the sign-ins they make.
WINDOW = {"from": iso(at(0)), "to": iso(at(10_000))}


async def test_events_come_newest_first_ties_by_id_with_every_field(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    headers = await admin_headers(client, session)
    subject = uuid.uuid4()
    first, tie_low, tie_high, last = await add_events(
        session,
        event(1, "user.create", entity_id=subject, actor_username="cli", after={"role": "admin"}),
        event(5, "device.revoke", entity_type="device", reason="Загублено на блокпосту"),
        event(5, "device.revoke", entity_type="device"),
        event(9, "settlements.import", entity_type="settlement", after={"rows": 269}),
    )

    events = await read(client, headers, **WINDOW)

    assert ids(events) == [last, tie_high, tie_low, first]
    assert events[-1] == {
        "id": first,
        "occurred_at": iso(at(1)),
        "actor_id": None,
        "actor_username": "cli",
        "action": "user.create",
        "entity_type": "user",
        "entity_id": str(subject),
        "reason": "",
        "before": None,
        "after": {"role": "admin"},
    }
    assert events[2]["reason"] == "Загублено на блокпосту"


async def test_the_admins_own_sign_in_is_in_the_log(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    admin = await make_user(session, Role.admin)
    headers = bearer((await tokens_for(client, admin))["access_token"])

    events = await read(client, headers)

    assert [(e["action"], e["actor_id"], e["entity_id"]) for e in events] == [
        ("auth.login", str(admin.id), str(admin.id))
    ]


async def actors(session: AsyncSession) -> tuple[User, User, dict[str, int]]:
    """Two accounts and events that name them by id, by name, or both."""
    olena = await make_user(session, Role.supervisor, username="o.kovalenko")
    mykola = await make_user(session, Role.field_worker, username="m.shevchenko")
    by_both, by_id_only, by_name_only, other, cli = await add_events(
        session,
        event(1, "auth.login", actor_id=olena.id, actor_username=olena.username),
        event(2, "auth.refresh_reuse", actor_id=olena.id),  # names the account by id only
        event(3, "auth.login_failed", actor_username=olena.username),  # by the name typed
        event(4, "auth.login", actor_id=mykola.id, actor_username=mykola.username),
        event(5, "user.assign", actor_username="cli", entity_id=olena.id),
    )
    return (
        olena,
        mykola,
        {
            "by_both": by_both,
            "by_id_only": by_id_only,
            "by_name_only": by_name_only,
            "other": other,
            "cli": cli,
        },
    )


async def test_actor_by_username_or_by_id_finds_every_event_naming_the_account(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    headers = await admin_headers(client, session)
    olena, mykola, e = await actors(session)

    by_name = await read(client, headers, actor=olena.username, **WINDOW)
    by_id = await read(client, headers, actor=str(olena.id), **WINDOW)
    other = await read(client, headers, actor=mykola.username, **WINDOW)
    cli = await read(client, headers, actor="cli", **WINDOW)
    nobody = await read(client, headers, actor="nobody-at-all", **WINDOW)

    olenas = [e["by_name_only"], e["by_id_only"], e["by_both"]]
    assert ids(by_name) == olenas
    assert ids(by_id) == olenas
    assert ids(other) == [e["other"]]
    assert ids(cli) == [e["cli"]]
    assert nobody == []


async def test_action_entity_and_time_filters_each_narrow_the_log(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    headers = await admin_headers(client, session)
    device, user = uuid.uuid4(), uuid.uuid4()
    register, revoke, create, assign, late = await add_events(
        session,
        event(10, "device.register", entity_type="device", entity_id=device),
        event(20, "device.revoke", entity_type="device", entity_id=device),
        event(30, "user.create", entity_id=user),
        event(40, "user.assign", entity_id=user),
        event(50, "user.assign", entity_id=uuid.uuid4()),
    )

    async def found(**params: Any) -> list[int]:
        return ids(await read(client, headers, **{**WINDOW, **params}))

    assert await found() == [late, assign, create, revoke, register]
    assert await found(action="user.assign") == [late, assign]
    assert await found(action="user") == []  # exact, not a prefix
    assert await found(entity_type="device") == [revoke, register]
    assert await found(entity_id=str(user)) == [assign, create]
    assert await found(entity_type="device", entity_id=str(user)) == []
    # `from` is included, `to` is not; an offset other than UTC means the same instant.
    assert await found(**{"from": iso(at(20)), "to": iso(at(40))}) == [create, revoke]
    kyiv = at(20).astimezone(timezone(timedelta(hours=2)))
    assert await found(**{"from": kyiv.isoformat()}) == [late, assign, create, revoke]
    assert await found(**{"to": iso(at(11))}) == [register]


async def test_filters_combine(client: httpx.AsyncClient, session: AsyncSession) -> None:
    headers = await admin_headers(client, session)
    olena, _, e = await actors(session)

    found = await read(
        client, headers, actor=olena.username, action="auth.login", **{"from": iso(at(1))}
    )
    narrower = await read(
        client, headers, actor=olena.username, action="auth.login", **{"from": iso(at(2))}
    )
    assigned = await read(
        client, headers, actor="cli", entity_type="user", entity_id=str(olena.id), **WINDOW
    )

    assert ids(found) == [e["by_both"]]
    assert narrower == []
    assert ids(assigned) == [e["cli"]]


async def test_pages_are_complete_stable_and_in_order(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    headers = await admin_headers(client, session)
    # 23 events in 9 distinct instants: pages must cut through ties without loss.
    stored = await add_events(
        session, *(event(n // 3, "user.assign", entity_id=str(n)) for n in range(23))
    )
    everything = (await client.get(URL, params={**WINDOW, "limit": 1000}, headers=headers)).json()
    assert everything["next"] is None
    expected = sorted(stored, key=lambda i: (-(stored.index(i) // 3), -i))
    assert ids(everything["events"]) == expected

    pages: list[list[int]] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {**WINDOW, "limit": 5}
        if cursor:
            params["cursor"] = cursor
        response = await client.get(URL, params=params, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(ids(body["events"]))
        if len(pages) == 1:
            # A newer event written while paging does not move the pages still to come.
            await add_events(session, event(5_000, "user.assign"))
        cursor = body["next"]
        if cursor is None:
            break

    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    assert [i for page in pages for i in page] == expected


async def test_an_exactly_full_last_page_says_there_is_no_next(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    headers = await admin_headers(client, session)
    await add_events(session, *(event(n) for n in range(4)))

    first = (await client.get(URL, params={**WINDOW, "limit": 2}, headers=headers)).json()
    second = (
        await client.get(
            URL, params={**WINDOW, "limit": 2, "cursor": first["next"]}, headers=headers
        )
    ).json()

    assert len(first["events"]) == 2
    assert first["next"] is not None
    assert len(second["events"]) == 2
    assert second["next"] is None


async def test_the_default_page_is_100_events(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    headers = await admin_headers(client, session)
    await add_events(session, *(event(n) for n in range(101)))

    body = (await client.get(URL, params=WINDOW, headers=headers)).json()

    assert len(body["events"]) == 100
    assert body["next"] is not None


@pytest.mark.parametrize("role", [Role.supervisor, Role.field_worker, Role.partner])
async def test_only_administrators_read_the_log(
    client: httpx.AsyncClient, session: AsyncSession, role: Role
) -> None:
    user = await make_user(session, role)
    headers = bearer((await tokens_for(client, user))["access_token"])

    assert_problem(await client.get(URL, headers=headers), 403)


async def test_signed_out_callers_are_refused(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get(URL), 401)


@pytest.mark.parametrize("field", ["from", "to"])
async def test_a_time_without_an_offset_is_422_naming_the_field(
    client: httpx.AsyncClient, session: AsyncSession, field: str
) -> None:
    headers = await admin_headers(client, session)

    response = await client.get(URL, params={field: "2026-03-01T10:00:00"}, headers=headers)

    body = assert_problem(response, 422)
    assert [e["field"] for e in body["errors"]] == [field]
    assert body["errors"][0]["code"] == "timezone_aware"
    assert field in body["detail"]


async def test_to_before_from_is_422_naming_to(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    headers = await admin_headers(client, session)

    response = await client.get(
        URL, params={"from": iso(at(10)), "to": iso(at(10))}, headers=headers
    )

    body = assert_problem(response, 422)
    assert [e["field"] for e in body["errors"]] == ["to"]


@pytest.mark.parametrize("limit", ["0", "1001", "many"])
async def test_a_limit_outside_1_to_1000_is_422(
    client: httpx.AsyncClient, session: AsyncSession, limit: str
) -> None:
    headers = await admin_headers(client, session)

    body = assert_problem(await client.get(URL, params={"limit": limit}, headers=headers), 422)
    assert [e["field"] for e in body["errors"]] == ["limit"]


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "bm90LWEtdGltZXw1",  # not-a-time|5
        "MjAyNi0wMy0wMVQwODowMDowMHw1",  # a time without an offset
        "MjAyNi0wMy0wMVQwODowMDowMCswMDowMHx4",  # not an id
        "MjAyNi0wMy0wMVQwODowMDowMCswMDowMHw5OTk5OTk5OTk5OTk5OTk5OTk5OQ",  # beyond any id
    ],
)
async def test_a_cursor_not_from_this_endpoint_is_400(
    client: httpx.AsyncClient, session: AsyncSession, cursor: str
) -> None:
    headers = await admin_headers(client, session)

    response = await client.get(URL, params={"cursor": cursor}, headers=headers)

    body = assert_problem(response, 400)
    assert [e["field"] for e in body["errors"]] == ["cursor"]


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
async def test_the_log_cannot_be_written_through_the_api(
    client: httpx.AsyncClient, session: AsyncSession, method: str
) -> None:
    headers = await admin_headers(client, session)
    [stored] = await add_events(session, event(1))

    collection = await client.request(method, URL, headers=headers, json={})
    one = await client.request(method, f"{URL}/{stored}", headers=headers, json={})

    assert_problem(collection, 405)
    assert collection.headers["allow"] == "GET"
    assert_problem(one, 404)
    assert ids(await read(client, headers, **WINDOW)) == [stored]


def test_no_route_changes_audit_events() -> None:
    """The audit router only reads, and the app documents no other audit operation."""
    app = create_app(make_settings("sqlite+aiosqlite:///:memory:"))
    assert [(r.path, r.methods) for r in audit_router.routes if isinstance(r, APIRoute)] == [
        ("", {"GET"})
    ]
    operations = {
        (path, method)
        for path, methods in app.openapi()["paths"].items()
        for method in methods
        if "audit" in path
    }
    assert operations == {(URL, "get")}
