"""Account administration: disabling and enabling an account, and listing accounts.
Administrators only."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.auth.models import Role, User
from tests.factories import (
    assert_problem,
    audit_events,
    bearer,
    make_user,
    read_fresh,
    sign_in,
    tokens_for,
)

USERS = "/api/v1/users"
REASON = "Contract ended; the phone was handed back to the office."


async def test_a_disabled_account_is_refused_everywhere_until_enabled(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    worker = await make_user(session, Role.field_worker)
    admin = await make_user(session, Role.admin)
    phone = uuid.uuid4()
    on_phone = await tokens_for(client, worker, phone)
    admin_token = (await tokens_for(client, admin))["access_token"]
    assert (
        await client.get("/api/v1/auth/me", headers=bearer(on_phone["access_token"]))
    ).is_success

    disabled = await client.post(
        f"{USERS}/{worker.id}/disable", json={"reason": REASON}, headers=bearer(admin_token)
    )
    assert disabled.status_code == 200, disabled.text
    assert disabled.json() == {
        "id": str(worker.id),
        "username": worker.username,
        "full_name": worker.full_name,
        "role": "field_worker",
        "active": False,
        "settlements": [],
    }
    # The access token has not expired, but the account behind it is disabled.
    refused = await client.get("/api/v1/auth/me", headers=bearer(on_phone["access_token"]))
    assert_problem(refused, 401, "The account is disabled or unknown.")
    stale = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": on_phone["refresh_token"]}
    )
    assert_problem(stale, 401)
    pushed = await client.post(
        "/api/v1/sync/push",
        json={
            "batch_id": str(uuid.uuid4()),
            "device_id": str(phone),
            "sent_at": "2026-11-27T10:00:00Z",
        },
        headers=bearer(on_phone["access_token"]),
    )
    assert_problem(pushed, 401, "The account is disabled or unknown.")
    # Signing in is refused exactly as with a wrong password: it tells no one the account
    # exists.
    again = await sign_in(client, worker.username, client_id=phone)
    wrong = await sign_in(client, admin.username, password="not the password")
    assert_problem(again, 401, "Incorrect username or password.")
    assert (again.json(), again.headers.get("www-authenticate")) == (
        wrong.json(),
        wrong.headers.get("www-authenticate"),
    )

    enabled = await client.post(
        f"{USERS}/{worker.id}/enable", json={"reason": "Rehired."}, headers=bearer(admin_token)
    )
    assert enabled.status_code == 200, enabled.text
    assert enabled.json()["active"] is True
    assert (await sign_in(client, worker.username, client_id=phone)).status_code == 200
    # Tokens from before the account was disabled stay revoked.
    assert_problem(
        await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": on_phone["refresh_token"]}
        ),
        401,
    )

    disable_event, enable_event = [
        *await audit_events(session, "user.disable"),
        *await audit_events(session, "user.enable"),
    ]
    assert (disable_event.entity_id, disable_event.actor_id) == (str(worker.id), admin.id)
    assert (disable_event.reason, disable_event.before, disable_event.after) == (
        REASON,
        {"active": True},
        {"active": False},
    )
    assert (enable_event.reason, enable_event.after) == ("Rehired.", {"active": True})

    listed = await client.get(USERS, headers=bearer(admin_token))
    assert listed.status_code == 200, listed.text
    assert {u["username"]: u["active"] for u in listed.json()} == {
        worker.username: True,
        admin.username: True,
    }


async def test_disabling_twice_changes_nothing_more(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    worker = await make_user(session, Role.supervisor)
    admin_token = (await tokens_for(client, await make_user(session, Role.admin)))["access_token"]
    for _ in range(2):
        response = await client.post(
            f"{USERS}/{worker.id}/disable", json={"reason": REASON}, headers=bearer(admin_token)
        )
        assert response.json()["active"] is False
    assert len(await audit_events(session, "user.disable")) == 1


async def test_an_administrator_cannot_disable_itself_nor_an_unknown_account(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    admin = await make_user(session, Role.admin)
    token = (await tokens_for(client, admin))["access_token"]
    itself = await client.post(
        f"{USERS}/{admin.id}/disable", json={"reason": REASON}, headers=bearer(token)
    )
    assert_problem(itself, 409, "You cannot disable your own account.")
    assert (await client.get("/api/v1/auth/me", headers=bearer(token))).is_success
    assert await audit_events(session, "user.disable") == []
    unknown = await client.post(
        f"{USERS}/{uuid.uuid4()}/disable", json={"reason": REASON}, headers=bearer(token)
    )
    assert_problem(unknown, 404)
    no_reason = await client.post(
        f"{USERS}/{admin.id}/enable", json={"reason": ""}, headers=bearer(token)
    )
    assert [e["field"] for e in assert_problem(no_reason, 422)["errors"]] == ["reason"]


@pytest.mark.parametrize("role", [Role.field_worker, Role.supervisor, Role.partner])
async def test_only_administrators_manage_accounts(
    client: httpx.AsyncClient, session: AsyncSession, role: Role
) -> None:
    caller = await make_user(session, role)
    target = await make_user(session, Role.field_worker)
    token = (await tokens_for(client, caller))["access_token"]
    assert_problem(await client.get(USERS, headers=bearer(token)), 403)
    for action in ("disable", "enable"):
        response = await client.post(
            f"{USERS}/{target.id}/{action}", json={"reason": REASON}, headers=bearer(token)
        )
        assert_problem(response, 403)
    assert await audit_events(session, "user.disable") == []
    [stored] = await read_fresh(session, select(User).where(col(User.id) == target.id))
    assert stored.is_active


async def test_two_administrators_disabling_each_other_at_once_leave_one_active(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    first = await make_user(session, Role.admin)
    second = await make_user(session, Role.admin)
    tokens = [(await tokens_for(client, admin))["access_token"] for admin in (first, second)]
    answers = await asyncio.gather(
        *(
            client.post(
                f"{USERS}/{target.id}/disable", json={"reason": REASON}, headers=bearer(token)
            )
            for target, token in ((second, tokens[0]), (first, tokens[1]))
        )
    )
    assert sorted(a.status_code for a in answers) == [200, 409], [a.text for a in answers]
    [refused] = [a for a in answers if a.status_code == 409]
    assert_problem(
        refused, 409, "This is the last active administrator; enable or create another first."
    )
    admins = await read_fresh(session, select(User).where(col(User.role) == Role.admin.value))
    assert [a.is_active for a in admins].count(True) == 1
    assert len(await audit_events(session, "user.disable")) == 1
