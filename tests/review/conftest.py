"""A small synthetic world for the review tests: two settlements, workers, a supervisor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import Role
from tests.factories import make_settlement
from tests.sync.helpers import Phone, household, make_phone, push, visit

A, B = "UA6308013001", "UA6308013002"


@dataclass
class World:
    client: httpx.AsyncClient
    worker: Phone  # assigned to A
    other_worker: Phone  # assigned to A
    worker_b: Phone  # assigned to B
    supervisor: Phone  # assigned to A

    async def household(self, phone: Phone | None = None, **fields: Any) -> str:
        phone = phone or self.worker
        item = household(settlement=fields.pop("settlement", A), **fields)
        pushed = await push(self.client, phone, phone.batch(households=[item]))
        assert pushed.statuses() == ["applied"], pushed.body
        return str(item["id"])

    async def visit(self, phone: Phone, household_id: str, **fields: Any) -> dict[str, Any]:
        item = visit(household_id, **fields)
        pushed = await push(self.client, phone, phone.batch(visits=[item]))
        assert pushed.response.status_code == 200, pushed.response.text
        return {"item": item, "result": pushed.body["results"][0]}

    async def get(self, path: str, **params: Any) -> httpx.Response:
        return await self.client.get(
            f"/api/v1{path}", params=params, headers=self.supervisor.headers
        )

    async def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return await self.client.post(f"/api/v1{path}", json=body, headers=self.supervisor.headers)


@pytest.fixture
async def world(client: httpx.AsyncClient, session: AsyncSession) -> World:
    await make_settlement(session, A)
    await make_settlement(session, B)
    return World(
        client=client,
        worker=await make_phone(client, session, settlements=[A]),
        other_worker=await make_phone(client, session, settlements=[A]),
        worker_b=await make_phone(client, session, settlements=[B]),
        supervisor=await make_phone(client, session, settlements=[A], role=Role.supervisor),
    )
