"""Failed sign-ins go to the audit log with their reason, never with the password typed,
while the caller gets one answer whatever went wrong."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.audit.models import AuditEvent
from app.auth.models import Device, RefreshToken, Role
from app.core.types import utcnow
from tests.factories import (
    assert_problem,
    audit_events,
    bearer,
    make_device,
    make_user,
    read_fresh,
    sign_in,
    tokens_for,
)

BAD_CREDENTIALS = "Incorrect username or password."
TYPED = "Kupiansk-2026-secret"


def as_text(event: AuditEvent) -> str:
    return repr(event.model_dump())


async def test_each_failed_sign_in_is_recorded_with_its_reason_but_not_the_password(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session, Role.supervisor, username="o.kovalenko")
    disabled = await make_user(session, Role.supervisor, username="i.bondar", is_active=False)
    unknown = "v.melnyk"

    responses = [
        await sign_in(client, user.username, password=TYPED),
        await sign_in(client, unknown, password=TYPED),
        await sign_in(client, disabled.username),  # the right password
    ]

    bodies = [assert_problem(r, 401, BAD_CREDENTIALS) for r in responses]
    assert bodies[0] == bodies[1] == bodies[2]  # nothing tells which accounts exist
    events = await audit_events(session, "auth.login_failed")
    assert [
        (e.actor_id, e.actor_username, e.entity_type, e.entity_id, e.reason, e.after)
        for e in events
    ] == [
        (None, user.username, "user", str(user.id), "wrong password", {"device_id": None}),
        (None, unknown, "user", "", "unknown username", {"device_id": None}),
        (
            None,
            disabled.username,
            "user",
            str(disabled.id),
            "account disabled",
            {"device_id": None},
        ),
    ]
    assert all(TYPED not in as_text(e) for e in events)
    assert not await audit_events(session, "auth.login")
    assert not await read_fresh(session, select(RefreshToken))


async def test_a_phone_of_another_account_or_a_revoked_phone_is_recorded(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    owner = await make_user(session, Role.field_worker)
    other = await make_user(session, Role.field_worker)
    phone = await make_device(session, owner)
    revoked = await make_device(session, owner)
    [stored] = await read_fresh(session, select(Device).where(col(Device.id) == revoked.id))
    stored.revoked_at = utcnow()
    await session.commit()

    responses = [
        await sign_in(client, other.username, client_id=phone.id),
        await sign_in(client, owner.username, client_id=revoked.id),
    ]

    for response in responses:
        assert_problem(response, 401, BAD_CREDENTIALS)
    events = await audit_events(session, "auth.login_failed")
    assert [(e.actor_username, e.entity_id, e.reason, e.after) for e in events] == [
        (
            other.username,
            str(other.id),
            "phone registered to another account",
            {"device_id": str(phone.id)},
        ),
        (owner.username, str(owner.id), "phone revoked", {"device_id": str(revoked.id)}),
    ]
    assert not await audit_events(session, "device.register")


async def test_an_administrator_finds_failed_sign_ins_for_an_account(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    admin = await make_user(session, Role.admin)
    user = await make_user(session, Role.supervisor)
    await sign_in(client, user.username, password=TYPED)
    await sign_in(client, f"nobody-{uuid.uuid4().hex[:8]}", password=TYPED)
    headers = bearer((await tokens_for(client, admin))["access_token"])

    by_name = await client.get(
        "/api/v1/audit",
        params={"actor": user.username, "action": "auth.login_failed"},
        headers=headers,
    )
    by_id = await client.get(
        "/api/v1/audit",
        params={"actor": str(user.id), "action": "auth.login_failed"},
        headers=headers,
    )

    assert by_name.status_code == by_id.status_code == 200, by_name.text
    assert by_name.json() == by_id.json()
    [event] = by_name.json()["events"]
    assert (event["entity_id"], event["reason"]) == (str(user.id), "wrong password")
    assert TYPED not in by_name.text


async def test_a_very_long_username_is_recorded_cut_short(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    typed = "Марія-" * 40

    response = await sign_in(client, typed, password=TYPED)

    assert_problem(response, 401, BAD_CREDENTIALS)
    [event] = await audit_events(session, "auth.login_failed")
    assert event.actor_username == typed[:64]
