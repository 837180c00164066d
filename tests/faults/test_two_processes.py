"""A revocation made through one server process is enforced by another on the next request.

Two separate servers (`fieldsync serve`, one worker each, different ports) on one
PostgreSQL database, so the test knows which process it talks to. Two field workers'
phones sync, one through each. An administrator, signed in on process A, revokes the
phone that syncs through B. The very next request of that phone to B is refused (401,
problem+json) whatever it is: a pull, a push, a token refresh, a new sign-in; the
simulator stops with `SignedOut`. The other phone goes on through both processes. What
both phones recorded before is stored once and folded, and the replicas equal the server
(bench/verify.py).

User accounts have no disable call in the admin API (only the CLI's database access), so
a device revocation is the revocation tested here.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime

import httpx
import pytest

from app.core.errors import PROBLEM_JSON
from bench import fieldwork
from bench.device import SignedOut
from bench.verify import verify
from tests.factories import PASSWORD
from tests.faults.helpers import engine_for, make_admin, phone, seed
from tests.servers import ServerProcess

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SETTLEMENT = "UA6308013001"


def assert_refused(response: httpx.Response, what: str) -> None:
    assert response.status_code == 401, f"{what}: {response.status_code} {response.text}"
    assert response.headers["content-type"] == PROBLEM_JSON, what


async def test_a_phone_revoked_through_one_process_is_refused_by_the_other(
    database: str,
) -> None:
    rng = random.Random(5)
    a, b = ServerProcess(database, workers=1), ServerProcess(database, workers=1)
    async with engine_for(database) as engine:
        users = await seed(engine, [SETTLEMENT], 2)
        admin = await make_admin(engine)
        try:
            await asyncio.gather(asyncio.to_thread(a.start), asyncio.to_thread(b.start))
            kept = phone(a.base_url, users[0], seed=1)
            lost = phone(b.base_url, users[1], seed=2)
            http_a = httpx.AsyncClient(base_url=a.base_url, timeout=10)
            http_b = httpx.AsyncClient(base_url=b.base_url, timeout=10)
            try:
                # --- Both phones at work, one through each process.
                await kept.sign_in()
                await lost.sign_in()
                households = [fieldwork.new_household(rng, kept, SETTLEMENT) for _ in range(4)]
                await kept.sync()
                await lost.pull()
                for device in (kept, lost):
                    for _ in range(10):
                        fieldwork.visit(rng, device, rng.choice(households))
                    await device.sync()
                await kept.pull()  # both have seen everything
                lost_headers = lost.auth_headers()
                refresh_token = lost.refresh_token

                # --- The administrator revokes the lost phone, through process A.
                signed_in = await http_a.post(
                    "/api/v1/auth/token", data={"username": admin.username, "password": PASSWORD}
                )
                assert signed_in.status_code == 200, signed_in.text
                revoked = await http_a.post(
                    f"/api/v1/devices/{lost.device_id}/revoke",
                    json={"reason": "Phone lost at a checkpoint (synthetic)."},
                    headers={"Authorization": f"Bearer {signed_in.json()['access_token']}"},
                )
                assert revoked.status_code == 200, revoked.text

                # --- Process B refuses it on the very next request, whatever it is.
                assert_refused(await http_b.get("/api/v1/sync/pull", headers=lost_headers), "pull")
                batch = {
                    "batch_id": str(uuid.uuid4()),
                    "device_id": str(lost.device_id),
                    "sent_at": datetime.now(UTC).isoformat(),
                    "visits": [],
                }
                assert_refused(
                    await http_b.post("/api/v1/sync/push", json=batch, headers=lost_headers),
                    "push",
                )
                assert_refused(
                    await http_b.post(
                        "/api/v1/auth/refresh", json={"refresh_token": refresh_token}
                    ),
                    "refresh",
                )
                assert_refused(
                    await http_b.post(
                        "/api/v1/auth/token",
                        data={
                            "username": users[1].username,
                            "password": PASSWORD,
                            "client_id": str(lost.device_id),
                        },
                    ),
                    "sign-in from the revoked phone",
                )
                with pytest.raises(SignedOut):
                    await lost.pull()

                # --- The other phone goes on, through either process.
                await kept.sync()
                still = await http_b.get("/api/v1/sync/pull", headers=kept.auth_headers())
                assert still.status_code == 200, still.text

                report = await verify(engine, [kept, lost])
            finally:
                await http_a.aclose()
                await http_b.aclose()
                await kept.close()
                await lost.close()
        finally:
            a.close()
            b.close()
    assert report.ok, report.summary()
    assert report.visits_stored == 20, report.summary()
