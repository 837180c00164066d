"""POST /api/v1/auth/token: password sign-in, device registration and its audit trail."""

from __future__ import annotations

import uuid

import httpx
import pytest
from jose import jwt
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.auth.models import Device, RefreshToken, Role
from app.core.config import Settings
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


async def test_right_password_returns_a_token_pair_that_works(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    user = await make_user(session, Role.supervisor)

    response = await sign_in(client, user.username)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert body["token_type"] == "bearer"
    assert isinstance(body["expires_in"], int)
    assert body["expires_in"] > 0
    assert isinstance(body["access_token"], str)
    assert body["access_token"].count(".") == 2  # a JWS: header.payload.signature
    assert isinstance(body["refresh_token"], str)
    assert body["refresh_token"]
    assert body["refresh_token"] != body["access_token"]
    claims = jwt.decode(
        body["access_token"],
        settings.secret_key.get_secret_value(),
        algorithms=[settings.jwt_algorithm],
    )
    assert claims["sub"] == str(user.id)
    assert claims["role"] == "supervisor"
    assert claims["typ"] == "access"
    assert claims["exp"] - claims["iat"] == body["expires_in"] == settings.access_token_minutes * 60

    me = await client.get("/api/v1/auth/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200, me.text
    assert me.json() == {
        "id": str(user.id),
        "username": user.username,
        "full_name": user.full_name,
        "role": "supervisor",
        "device_id": None,
        "settlements": [],
    }


async def test_wrong_password_unknown_user_and_disabled_user_get_the_same_answer(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session, Role.supervisor)
    disabled = await make_user(session, Role.supervisor, is_active=False)

    wrong_password = await sign_in(client, user.username, password="not the password")
    unknown_user = await sign_in(client, f"nobody-{uuid.uuid4().hex[:8]}")
    disabled_user = await sign_in(client, disabled.username)  # with the right password

    responses = [wrong_password, unknown_user, disabled_user]
    bodies = [assert_problem(r, 401, BAD_CREDENTIALS) for r in responses]
    assert bodies[0] == bodies[1] == bodies[2]
    assert {r.headers.get("www-authenticate") for r in responses} == {"Bearer"}
    assert not await audit_events(session, "auth.login")


async def test_field_worker_first_sign_in_registers_the_device(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    worker = await make_user(session, Role.field_worker)
    device_id = uuid.uuid4()

    response = await sign_in(client, worker.username, client_id=device_id)

    assert response.status_code == 200, response.text
    devices = await read_fresh(session, select(Device).where(col(Device.owner_id) == worker.id))
    assert [d.id for d in devices] == [device_id]
    assert devices[0].revoked_at is None
    assert devices[0].last_seen_at is not None
    [event] = await audit_events(session, "device.register")
    assert event.entity_type == "device"
    assert event.entity_id == str(device_id)
    assert event.actor_id == worker.id
    assert event.actor_username == worker.username

    me = await client.get("/api/v1/auth/me", headers=bearer(response.json()["access_token"]))
    assert me.status_code == 200, me.text
    assert me.json()["device_id"] == str(device_id)


async def test_field_worker_signing_in_again_from_their_phone_registers_nothing_new(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    worker = await make_user(session, Role.field_worker)
    device_id = uuid.uuid4()

    first = await sign_in(client, worker.username, client_id=device_id)
    second = await sign_in(client, worker.username, client_id=device_id)

    assert first.status_code == second.status_code == 200, second.text
    devices = await read_fresh(session, select(Device).where(col(Device.owner_id) == worker.id))
    assert [d.id for d in devices] == [device_id]
    assert len(await audit_events(session, "device.register")) == 1
    assert len(await audit_events(session, "auth.login")) == 2


async def test_field_worker_without_client_id_is_refused(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    worker = await make_user(session, Role.field_worker)

    response = await sign_in(client, worker.username)

    body = assert_problem(response, 422)
    assert "client_id" in body["detail"]
    assert not await read_fresh(session, select(Device))
    assert not await read_fresh(session, select(RefreshToken))
    assert not await audit_events(session, "auth.login")


@pytest.mark.parametrize("client_id", ["not-a-uuid", "12345", "phone-of-olena"])
async def test_client_id_that_is_not_a_uuid_is_refused(
    client: httpx.AsyncClient, session: AsyncSession, client_id: str
) -> None:
    worker = await make_user(session, Role.field_worker)

    response = await sign_in(client, worker.username, client_id=client_id)

    body = assert_problem(response, 422)
    assert "client_id" in body["detail"]
    assert not await read_fresh(session, select(Device))


async def test_device_of_another_user_is_refused_like_bad_credentials(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    owner = await make_user(session, Role.field_worker)
    device = await make_device(session, owner)
    other = await make_user(session, Role.field_worker)
    wrong_password = await sign_in(client, other.username, password="not the password")

    response = await sign_in(client, other.username, client_id=device.id)

    assert assert_problem(response, 401, BAD_CREDENTIALS) == wrong_password.json()
    assert response.headers["www-authenticate"] == "Bearer"
    [stored] = await read_fresh(session, select(Device).where(col(Device.id) == device.id))
    assert stored.owner_id == owner.id
    assert not await audit_events(session, "auth.login")
    # The owner still signs in from it.
    assert (await sign_in(client, owner.username, client_id=device.id)).status_code == 200


async def test_sign_in_writes_an_auth_login_audit_event(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    worker = await make_user(session, Role.field_worker)
    supervisor = await make_user(session, Role.supervisor)
    device_id = uuid.uuid4()

    await tokens_for(client, worker, device_id)
    await tokens_for(client, supervisor)

    events = await audit_events(session, "auth.login")
    assert [(e.actor_id, e.actor_username) for e in events] == [
        (worker.id, worker.username),
        (supervisor.id, supervisor.username),
    ]
    assert [(e.entity_type, e.entity_id) for e in events] == [
        ("user", str(worker.id)),
        ("user", str(supervisor.id)),
    ]
    assert [e.after for e in events] == [{"device_id": str(device_id)}, {"device_id": None}]


@pytest.mark.parametrize(
    "typed",
    ["o.kovalenko\x00", "о" * 65, "Оксана\x00'; DROP TABLE user_account; --"],
)
async def test_a_username_that_cannot_exist_gets_the_same_answer_not_a_500(
    client: httpx.AsyncClient, session: AsyncSession, typed: str
) -> None:
    """NUL bytes and lone surrogates cannot be sent to PostgreSQL; such a name is simply
    unknown, and the failed sign-in is still recorded (cleaned)."""
    response = await sign_in(client, typed)
    assert_problem(response, 401, BAD_CREDENTIALS)
    [event] = await audit_events(session, "auth.login_failed")
    assert event.reason == "unknown username"
    assert "\x00" not in event.actor_username
    assert len(event.actor_username) <= 64


async def test_a_username_of_invalid_utf8_gets_the_same_answer(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    response = await client.post(
        "/api/v1/auth/token",
        content=b"grant_type=password&username=%ED%A0%80admin%00&password=x",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert_problem(response, 401, BAD_CREDENTIALS)
