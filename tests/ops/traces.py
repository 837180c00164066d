"""Requests that carry every kind of secret a log must never hold, for the log tests.

`leave_traces` signs in with a distinctive password (and fails once with another), renews
its tokens, pushes a household and visits full of distinctive personal data, searches for
it by address, pulls it, and exports it, checking on the way that each secret really
went through the server. It returns every secret, tokens included, for the caller to
look for in the logs. Everything is synthetic.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import Role
from app.core.security import hash_password
from tests.factories import PASSWORD, bearer, make_settlement, make_user, sign_in
from tests.sync.helpers import SETTLEMENT, Phone, household, visit

SECRETS = {
    "password": "Пароль-Журавель-7391!",
    "wrong_password": "Невірний-Лелека-2468?",
    "head_name": "Кравченко Оксана Потаємна",
    "phone": "+380509876543",
    "address": "вул. Прихована, 13",
    "notes": "Собака у дворі, ключ у сусідки",
    "visit_notes": "Мати лежача, потрібні ноші",
    "reason_note": "Доглядає хвору матір",
    "destination": "Полтава, у кума Степана",
    "shared_password": PASSWORD,
}


@dataclass
class Traces:
    """What went through the server: every secret, and the request ids it was sent with."""

    secrets: list[str] = field(default_factory=list)
    request_ids: list[str] = field(default_factory=list)

    def sent(self, response: httpx.Response) -> httpx.Response:
        self.request_ids.append(response.headers["x-request-id"])
        return response


async def leave_traces(client: httpx.AsyncClient, session: AsyncSession) -> Traces:
    traces = Traces(secrets=list(SECRETS.values()))
    await make_settlement(session, SETTLEMENT)
    worker = await make_user(session, Role.field_worker, settlements=[SETTLEMENT])
    worker.password_hash = hash_password(SECRETS["password"])
    session.add(worker)
    await session.commit()
    supervisor = await make_user(session, Role.supervisor, settlements=[SETTLEMENT])
    device_id = uuid.uuid4()

    failed = traces.sent(
        await sign_in(client, worker.username, SECRETS["wrong_password"], client_id=device_id)
    )
    assert failed.status_code == 401, failed.text
    signed_in = traces.sent(
        await sign_in(client, worker.username, SECRETS["password"], client_id=device_id)
    )
    assert signed_in.status_code == 200, signed_in.text
    first = signed_in.json()
    renewed = traces.sent(
        await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    )
    assert renewed.status_code == 200, renewed.text
    tokens = renewed.json()
    traces.secrets += [
        first["access_token"],
        first["refresh_token"],
        tokens["access_token"],
        tokens["refresh_token"],
    ]
    phone = Phone(user=worker, device_id=device_id, token=tokens["access_token"])

    household_id = uuid.uuid4()
    batch = phone.batch(
        households=[
            household(
                household_id,
                head_name=SECRETS["head_name"],
                phone=SECRETS["phone"],
                address=SECRETS["address"],
                notes=SECRETS["notes"],
            )
        ],
        visits=[
            visit(
                household_id,
                decision="leave",
                reasons=["shelling_or_attacks"],
                reason_note=SECRETS["reason_note"],
                leave_mode="own_means",
                destination=SECRETS["destination"],
                notes=SECRETS["visit_notes"],
            ),
        ],
    )
    pushed = traces.sent(await client.post("/api/v1/sync/push", json=batch, headers=phone.headers))
    assert pushed.status_code == 200, pushed.text
    assert {r["status"] for r in pushed.json()["results"]} == {"applied"}, pushed.text
    pulled = traces.sent(await client.get("/api/v1/sync/pull", headers=phone.headers))
    assert SECRETS["head_name"] in pulled.text

    boss = await sign_in(client, supervisor.username, PASSWORD)
    assert boss.status_code == 200, boss.text
    boss_headers = bearer(boss.json()["access_token"])
    traces.secrets.append(boss.json()["access_token"])
    found = traces.sent(
        await client.get(
            "/api/v1/households",
            params={"address": SECRETS["address"], "settlement": SETTLEMENT},
            headers=boss_headers,
        )
    )
    assert found.status_code == 200, found.text
    assert [h["head_name"] for h in found.json()["items"]] == [SECRETS["head_name"]]
    for kind, file_format in (("households", "csv"), ("visits", "jsonl")):
        exported = traces.sent(
            await client.get(
                f"/api/v1/exports/{kind}",
                params={"format": file_format},
                headers=boss_headers,
            )
        )
        assert exported.status_code == 200, exported.text
        assert SECRETS["head_name" if kind == "households" else "destination"] in exported.text
    return traces
