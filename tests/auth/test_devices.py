"""Device administration: revoking a phone, and listing phones. Administrators only."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.auth.models import Device, Role, User
from tests.factories import (
    assert_problem,
    audit_events,
    bearer,
    make_user,
    read_fresh,
    sign_in,
    tokens_for,
)

DEVICES = "/api/v1/devices"
REASON = "Phone lost at a checkpoint."


def revoke_url(device_id: uuid.UUID) -> str:
    return f"{DEVICES}/{device_id}/revoke"


@dataclass
class Registered:
    """A field worker's phone, registered by signing in, and an administrator."""

    worker: User
    device_id: uuid.UUID
    worker_token: str
    admin: User
    admin_token: str


@pytest.fixture
async def registered(client: httpx.AsyncClient, session: AsyncSession) -> Registered:
    worker = await make_user(session, Role.field_worker)
    admin = await make_user(session, Role.admin)
    device_id = uuid.uuid4()
    worker_token = (await tokens_for(client, worker, device_id))["access_token"]
    admin_token = (await tokens_for(client, admin))["access_token"]
    return Registered(worker, device_id, worker_token, admin, admin_token)


async def test_revoked_device_is_refused_on_its_next_call(
    client: httpx.AsyncClient, registered: Registered
) -> None:
    worker, device_id = registered.worker, registered.device_id
    worker_token, admin_token = registered.worker_token, registered.admin_token
    me = await client.get("/api/v1/auth/me", headers=bearer(worker_token))
    assert me.status_code == 200, me.text

    response = await client.post(
        revoke_url(device_id), json={"reason": REASON}, headers=bearer(admin_token)
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == str(device_id)
    assert body["owner"] == worker.username
    assert body["revoked_at"] is not None
    # The access token has not expired, but the device behind it is revoked.
    refused = await client.get("/api/v1/auth/me", headers=bearer(worker_token))
    assert_problem(refused, 401, "This device has been revoked.")
    assert refused.headers["www-authenticate"] == "Bearer"
    # So is signing in again from it.
    again = await sign_in(client, worker.username, client_id=device_id)
    assert_problem(again, 401, "Incorrect username or password.")


async def test_revocation_is_audited_with_its_reason(
    client: httpx.AsyncClient, session: AsyncSession, registered: Registered
) -> None:
    admin, device_id, admin_token = registered.admin, registered.device_id, registered.admin_token

    response = await client.post(
        revoke_url(device_id), json={"reason": REASON}, headers=bearer(admin_token)
    )
    assert response.status_code == 200, response.text

    [event] = await audit_events(session, "device.revoke")
    assert event.reason == REASON
    assert event.entity_type == "device"
    assert event.entity_id == str(device_id)
    assert event.actor_id == admin.id
    assert event.actor_username == admin.username
    assert event.before == {"revoked_at": None}
    assert event.after is not None
    assert event.after["revoked_at"]
    [device] = await read_fresh(session, select(Device).where(col(Device.id) == device_id))
    assert device.revoked_at is not None
    assert event.after["revoked_at"] == device.revoked_at.isoformat()


async def test_device_list_shows_which_devices_are_revoked(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    worker = await make_user(session, Role.field_worker)
    admin = await make_user(session, Role.admin)
    lost, kept = uuid.uuid4(), uuid.uuid4()
    await tokens_for(client, worker, lost)
    await tokens_for(client, worker, kept)
    admin_token = (await tokens_for(client, admin))["access_token"]
    revoke = await client.post(
        revoke_url(lost), json={"reason": REASON}, headers=bearer(admin_token)
    )
    assert revoke.status_code == 200, revoke.text

    response = await client.get(DEVICES, headers=bearer(admin_token))

    assert response.status_code == 200, response.text
    listed = {d["id"]: d for d in response.json()}
    assert set(listed) == {str(lost), str(kept)}
    assert listed[str(lost)]["revoked_at"] is not None
    assert listed[str(kept)]["revoked_at"] is None
    assert {d["owner"] for d in listed.values()} == {worker.username}


@pytest.mark.parametrize("role", [Role.field_worker, Role.supervisor, Role.partner])
async def test_non_admins_cannot_list_or_revoke_devices(
    client: httpx.AsyncClient, session: AsyncSession, role: Role
) -> None:
    caller = await make_user(session, role)
    worker = await make_user(session, Role.field_worker)
    device_id = uuid.uuid4()
    await tokens_for(client, worker, device_id)
    token = (await tokens_for(client, caller))["access_token"]
    forbidden = f"This call is for the admin role; you are {role.value}."

    listing = await client.get(DEVICES, headers=bearer(token))
    revoke = await client.post(
        revoke_url(device_id), json={"reason": REASON}, headers=bearer(token)
    )

    assert_problem(listing, 403, forbidden)
    assert_problem(revoke, 403, forbidden)
    [device] = await read_fresh(session, select(Device).where(col(Device.id) == device_id))
    assert device.revoked_at is None
    assert not await audit_events(session, "device.revoke")


async def test_device_endpoints_need_a_token(client: httpx.AsyncClient) -> None:
    listing = await client.get(DEVICES)
    revoke = await client.post(revoke_url(uuid.uuid4()), json={"reason": REASON})

    assert_problem(listing, 401, "Sign in first: this call needs a bearer token.")
    assert_problem(revoke, 401, "Sign in first: this call needs a bearer token.")


async def test_revoking_an_unknown_device_is_not_found(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    admin = await make_user(session, Role.admin)
    token = (await tokens_for(client, admin))["access_token"]
    unknown = uuid.uuid4()

    response = await client.post(
        revoke_url(unknown), json={"reason": REASON}, headers=bearer(token)
    )

    assert_problem(response, 404, f"No device {unknown}.")
    assert not await audit_events(session, "device.revoke")


async def test_revoking_without_a_reason_is_invalid(
    client: httpx.AsyncClient, session: AsyncSession, registered: Registered
) -> None:
    device_id, token = registered.device_id, registered.admin_token

    response = await client.post(revoke_url(device_id), json={"reason": ""}, headers=bearer(token))

    body = assert_problem(response, 422)
    assert "reason" in body["detail"]
    [device] = await read_fresh(session, select(Device).where(col(Device.id) == device_id))
    assert device.revoked_at is None
