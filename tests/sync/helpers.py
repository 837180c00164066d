"""Building push batches and phones for the sync tests. All data is synthetic."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.auth.models import Role, User
from app.conflicts.models import ConflictCandidate
from tests.factories import (
    bearer,
    make_settlement,
    make_user,
    read_fresh,
    sign_in,
    tokens_for,
)

SETTLEMENT = "UA6308013001"


def now() -> datetime:
    return datetime.now(UTC)


def iso(at: datetime) -> str:
    return at.isoformat()


@dataclass
class Phone:
    """A field worker's phone: its user, device id and access token."""

    user: User
    device_id: uuid.UUID
    token: str
    clock_skew: timedelta = timedelta(0)

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.token)

    def clock(self) -> datetime:
        return now() + self.clock_skew

    def batch(
        self,
        *,
        households: list[Any] | None = None,
        visits: list[Any] | None = None,
        batch_id: uuid.UUID | None = None,
        sent_at: datetime | None = None,
    ) -> dict[str, Any]:
        return {
            "batch_id": str(batch_id or uuid.uuid4()),
            "device_id": str(self.device_id),
            "sent_at": iso(sent_at or self.clock()),
            "app_version": "test-1.0",
            "households": households or [],
            "visits": visits or [],
        }


async def make_phone(
    client: httpx.AsyncClient,
    session: AsyncSession,
    *,
    settlements: list[str] | None = None,
    role: Role = Role.field_worker,
) -> Phone:
    user = await make_user(session, role, settlements=settlements or [])
    device_id = uuid.uuid4()
    tokens = await tokens_for(client, user, device_id)
    return Phone(user=user, device_id=device_id, token=tokens["access_token"])


async def sign_in_phones(clients: list[httpx.AsyncClient], users: list[User]) -> list[Phone]:
    """Each user signs in over HTTP at once, on its own client, from a new phone."""
    device_ids = [uuid.uuid4() for _ in users]
    signed_in = await asyncio.gather(
        *(
            sign_in(http, user.username, client_id=device_id)
            for http, user, device_id in zip(clients, users, device_ids, strict=True)
        )
    )
    for response in signed_in:
        assert response.status_code == 200, response.text
    return [
        Phone(user=user, device_id=device_id, token=response.json()["access_token"])
        for user, device_id, response in zip(users, device_ids, signed_in, strict=True)
    ]


async def ensure_settlement(session: AsyncSession, pcode: str = SETTLEMENT) -> str:
    await make_settlement(session, pcode)
    return pcode


def household(
    household_id: uuid.UUID | None = None,
    *,
    settlement: str = SETTLEMENT,
    observed_at: datetime | None = None,
    **fields: Any,
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": str(household_id or uuid.uuid4()),
        "settlement": settlement,
        "address": "вул. Синтетична, 1",
        "head_name": "Синтетична Особа",
        "members": 2,
        "observed_at": iso(observed_at or now() - timedelta(minutes=5)),
        "base_version": None,
    }
    item.update(fields)
    return item


def visit(
    household_id: uuid.UUID | str,
    *,
    visit_id: uuid.UUID | None = None,
    visited_at: datetime | None = None,
    decision: str | None = "stay",
    outcome: str = "contacted",
    **fields: Any,
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": str(visit_id or uuid.uuid4()),
        "household_id": str(household_id),
        "visited_at": iso(visited_at or now() - timedelta(minutes=1)),
        "outcome": outcome,
        "decision": decision if outcome == "contacted" else None,
        "reasons": ["attachment_to_home"] if decision == "stay" and outcome == "contacted" else [],
        "needs": [],
        "consent_to_share": True,
    }
    item.update(fields)
    return item


@dataclass
class Pushed:
    response: httpx.Response
    body: dict[str, Any] = field(default_factory=dict)

    def statuses(self) -> list[str]:
        return [r["status"] for r in self.body["results"]]


async def push(client: httpx.AsyncClient, phone: Phone, batch: dict[str, Any]) -> Pushed:
    response = await client.post("/api/v1/sync/push", json=batch, headers=phone.headers)
    body = response.json() if response.headers.get("content-type", "").endswith("json") else {}
    return Pushed(response=response, body=body)


async def candidates(session: AsyncSession, conflict_id: uuid.UUID) -> list[dict[str, Any]]:
    """A conflict's candidates as the database holds them, ids as strings."""
    rows = await read_fresh(
        session, select(ConflictCandidate).where(col(ConflictCandidate.conflict_id) == conflict_id)
    )
    return [
        {
            "item_id": str(r.item_id),
            "kind": r.kind,
            "value": r.value,
            "recorded_by": str(r.recorded_by),
            "device_id": str(r.device_id),
            "recorded_at": r.recorded_at,
        }
        for r in rows
    ]
