"""POST /api/v1/auth/refresh: rotation, reuse detection and the end of a token family."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.auth.models import RefreshToken, Role, User
from app.core.security import refresh_secret_hash
from app.core.types import utcnow
from tests.factories import (
    assert_problem,
    audit_events,
    bearer,
    make_user,
    read_fresh,
    tokens_for,
)

REFRESH = "/api/v1/auth/refresh"
NOT_VALID = "The refresh token is not valid; sign in again."
ALREADY_USED = "The refresh token was already used; sign in again."


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post(REFRESH, json={"refresh_token": token})


async def stored_token(session: AsyncSession, token: str) -> RefreshToken:
    [row] = await read_fresh(
        session,
        select(RefreshToken).where(col(RefreshToken.token_hash) == refresh_secret_hash(token)),
    )
    return row


async def assert_refused(response: httpx.Response, detail: str) -> None:
    assert_problem(response, 401, detail)
    assert response.headers["www-authenticate"] == "Bearer"


async def me_status(client: httpx.AsyncClient, access_token: str) -> int:
    return (await client.get("/api/v1/auth/me", headers=bearer(access_token))).status_code


async def test_refresh_returns_a_new_pair_that_works(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    worker = await make_user(session, Role.field_worker)
    device_id = uuid.uuid4()
    old = await tokens_for(client, worker, device_id)

    response = await refresh(client, old["refresh_token"])

    assert response.status_code == 200, response.text
    new = response.json()
    assert set(new) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert new["token_type"] == "bearer"
    assert new["expires_in"] > 0
    assert new["access_token"] != old["access_token"]
    assert new["refresh_token"] != old["refresh_token"]
    me = await client.get("/api/v1/auth/me", headers=bearer(new["access_token"]))
    assert me.status_code == 200, me.text
    assert me.json()["username"] == worker.username
    assert me.json()["device_id"] == str(device_id)
    # Rotation: the new token continues the old one's family; the old one is spent.
    old_row = await stored_token(session, old["refresh_token"])
    new_row = await stored_token(session, new["refresh_token"])
    assert old_row.rotated_at is not None
    assert new_row.rotated_at is None
    assert new_row.family_id == old_row.family_id
    assert new_row.device_id == device_id


async def test_reusing_a_rotated_token_revokes_its_whole_family_only(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    worker = await make_user(session, Role.field_worker)
    device_id = uuid.uuid4()
    first = await tokens_for(client, worker, device_id)
    other_sign_in = await tokens_for(client, worker, device_id)
    rotated = await refresh(client, first["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    newest = rotated.json()

    reuse = await refresh(client, first["refresh_token"])

    await assert_refused(reuse, ALREADY_USED)
    # The legitimate holder's newest token is gone too: the family is revoked.
    await assert_refused(await refresh(client, newest["refresh_token"]), NOT_VALID)
    family = (await stored_token(session, first["refresh_token"])).family_id
    rows = await read_fresh(
        session, select(RefreshToken).where(col(RefreshToken.family_id) == family)
    )
    assert len(rows) == 2
    assert all(row.revoked_at is not None for row in rows)
    [event] = await audit_events(session, "auth.refresh_reuse")
    assert event.entity_type == "user"
    assert event.entity_id == str(worker.id)
    assert event.actor_id == worker.id
    # Another sign-in of the same user is its own family and keeps working.
    assert (await stored_token(session, other_sign_in["refresh_token"])).revoked_at is None
    other_rotated = await refresh(client, other_sign_in["refresh_token"])
    assert other_rotated.status_code == 200, other_rotated.text
    assert await me_status(client, other_rotated.json()["access_token"]) == 200


async def test_unknown_refresh_token_is_refused(client: httpx.AsyncClient) -> None:
    await assert_refused(await refresh(client, "kq3V0p0wQm3o1m1o2Yb6s6JtI2rE9Xq4"), NOT_VALID)


async def test_empty_refresh_token_is_invalid(client: httpx.AsyncClient) -> None:
    body = assert_problem(await refresh(client, ""), 422)
    assert "refresh_token" in body["detail"]


async def test_expired_refresh_token_is_refused(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session, Role.supervisor)
    tokens = await tokens_for(client, user)
    result = await session.execute(
        update(RefreshToken)
        .where(col(RefreshToken.token_hash) == refresh_secret_hash(tokens["refresh_token"]))
        .values(expires_at=utcnow() - timedelta(seconds=1))
    )
    await session.commit()
    assert result.rowcount == 1  # type: ignore[attr-defined]

    await assert_refused(await refresh(client, tokens["refresh_token"]), NOT_VALID)
    assert (await stored_token(session, tokens["refresh_token"])).rotated_at is None


async def test_refresh_for_a_revoked_device_is_refused(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    worker = await make_user(session, Role.field_worker)
    admin = await make_user(session, Role.admin)
    device_id = uuid.uuid4()
    tokens = await tokens_for(client, worker, device_id)
    admin_tokens = await tokens_for(client, admin)
    revoke = await client.post(
        f"/api/v1/devices/{device_id}/revoke",
        json={"reason": "Phone stolen."},
        headers=bearer(admin_tokens["access_token"]),
    )
    assert revoke.status_code == 200, revoke.text

    await assert_refused(
        await refresh(client, tokens["refresh_token"]), "This device has been revoked."
    )
    # Refused before rotating, so nothing new was issued.
    assert (await stored_token(session, tokens["refresh_token"])).rotated_at is None


async def test_refresh_for_a_disabled_user_is_refused(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user: User = await make_user(session, Role.supervisor)
    tokens = await tokens_for(client, user)
    user.is_active = False
    session.add(user)
    await session.commit()

    await assert_refused(
        await refresh(client, tokens["refresh_token"]), "The account is disabled or unknown."
    )


async def test_a_family_revoked_while_a_rotation_raced_it_stays_revoked(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    """A revocation whose UPDATE missed a token issued concurrently (READ COMMITTED)
    still stops that token: rotation requires that no token of the family is revoked."""
    user = await make_user(session, Role.supervisor)
    first = await tokens_for(client, user)
    second = (await refresh(client, first["refresh_token"])).json()
    # Revoke only the old token, as a racing revocation that did not see the new one.
    await session.execute(
        update(RefreshToken)
        .where(col(RefreshToken.token_hash) == refresh_secret_hash(first["refresh_token"]))
        .values(revoked_at=utcnow())
    )
    await session.commit()
    assert (await refresh(client, second["refresh_token"])).status_code == 401
