"""Builders for test data, and a sign-in helper. Everything here is synthetic."""

from __future__ import annotations

import itertools
import uuid
from functools import cache
from http import HTTPStatus
from typing import Any, TypeVar

import httpx
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.audit.models import AuditEvent
from app.auth.models import Device, Role, User
from app.core.errors import PROBLEM_JSON
from app.core.security import hash_password
from app.settlements.models import Settlement, SettlementAssignment

PASSWORD = "correct horse battery staple"
_counter = itertools.count(1)


@cache
def _password_hash() -> str:
    # Hashing costs tens of milliseconds; tests share one hash of PASSWORD.
    return hash_password(PASSWORD)


async def make_user(
    session: AsyncSession,
    role: Role = Role.field_worker,
    *,
    username: str | None = None,
    is_active: bool = True,
    settlements: list[str] | None = None,
) -> User:
    user = User(
        username=username or f"{role.value}-{next(_counter)}",
        role=role.value,
        full_name="Synthetic Person",
        password_hash=_password_hash(),
        is_active=is_active,
    )
    session.add(user)
    await session.flush()
    for pcode in settlements or []:
        session.add(SettlementAssignment(user_id=user.id, settlement_pcode=pcode))
    await session.commit()
    return user


async def make_settlement(session: AsyncSession, pcode: str | None = None) -> Settlement:
    n = next(_counter)
    pcode = pcode or f"UA63080{n:05d}"
    settlement = Settlement(
        pcode=pcode,
        katottg=f"{pcode}{n:07d}",
        category="village",
        name_uk=f"Синтетичне {n}",
        name_en=f"Syntetychne {n}",
        hromada_pcode=pcode[:9],
        hromada_uk="Синтетична",
        hromada_en="Syntetychna",
        raion_pcode=pcode[:6],
        oblast_pcode=pcode[:4],
    )
    session.add(settlement)
    await session.commit()
    return settlement


async def make_device(session: AsyncSession, owner: User) -> Device:
    device = Device(id=uuid.uuid4(), owner_id=owner.id, label="synthetic phone")
    session.add(device)
    await session.commit()
    return device


async def sign_in(
    client: httpx.AsyncClient,
    username: str,
    password: str = PASSWORD,
    client_id: uuid.UUID | str | None = None,
) -> httpx.Response:
    form = {"username": username, "password": password, "grant_type": "password"}
    if client_id is not None:
        form["client_id"] = str(client_id)
    return await client.post("/api/v1/auth/token", data=form)


async def tokens_for(
    client: httpx.AsyncClient, user: User, device_id: uuid.UUID | None = None
) -> dict[str, str]:
    if user.role == Role.field_worker and device_id is None:
        device_id = uuid.uuid4()
    response = await sign_in(client, user.username, client_id=device_id)
    assert response.status_code == 200, response.text
    body: dict[str, str] = response.json()
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- Reading what the app committed, and checking problem documents -----------------

_Row = TypeVar("_Row")


async def read_fresh(session: AsyncSession, statement: Select[_Row]) -> list[_Row]:
    """Rows as the database holds them now, not as this session last saw them.

    The app commits on its own connections. Ending this session's transaction first drops
    any SQLite snapshot it holds, `populate_existing` overwrites stale identity-map copies,
    and ending it again afterwards leaves no transaction open while the app writes.
    """
    await session.commit()
    result = await session.scalars(statement.execution_options(populate_existing=True))
    rows = list(result.all())
    await session.commit()
    return rows


async def audit_events(session: AsyncSession, action: str) -> list[AuditEvent]:
    """The audit events recorded with `action`, oldest first."""
    return await read_fresh(
        session,
        select(AuditEvent).where(col(AuditEvent.action) == action).order_by(col(AuditEvent.id)),
    )


def assert_problem(
    response: httpx.Response, status: int, detail: str | None = None
) -> dict[str, Any]:
    """Check a `application/problem+json` error of `status` (and `detail`); return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON, response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status, body
    assert body["title"] == HTTPStatus(status).phrase, body
    assert body["instance"] == response.request.url.path, body
    if detail is not None:
        assert body["detail"] == detail, body
    return body
