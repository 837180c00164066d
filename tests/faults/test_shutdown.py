"""Graceful shutdown: SIGTERM lets a push in flight finish and answer, refuses new
connections, and gives up on a push that outlasts FIELDSYNC_SHUTDOWN_GRACE_SECONDS
without committing any of it.

Two real one-worker servers on one PostgreSQL database, one with a grace of 30 s and one
with 1 s. Against each, a phone uploads a 200-visit batch in two halves and holds the
second half back: the push is then being handled (its request is authenticated, its
database transaction open, the handler reading the body) when the server gets SIGTERM.

- Grace 30 s: once the server stops listening (a new connection is refused), the second
  half is sent; the push is answered 200 with every visit applied, the visits and the
  batch are stored, and the process completes its shutdown and exits (uvicorn then
  re-raises the SIGTERM it caught, so the exit status is "terminated by SIGTERM").
- Grace 1 s: the second half is held past the grace; the server cancels the push and
  exits, the phone's connection breaks without an answer, and nothing of the batch is
  stored (the phone will send it again to a running server).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlmodel import col

from app.sync.models import SyncBatch
from app.visits.models import Visit
from bench.device import Device
from tests.faults.helpers import engine_for, phone, seed
from tests.servers import ServerProcess
from tests.sync.helpers import household, iso, now, visit

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SETTLEMENT = "UA6308013001"
VISITS = 200
WAIT_SECONDS = 15.0


def batch_for(device: Device) -> dict[str, Any]:
    home = uuid.uuid4()
    return {
        "batch_id": str(uuid.uuid4()),
        "device_id": str(device.device_id),
        "sent_at": iso(now()),
        "app_version": "shutdown-test",
        "households": [household(home, settlement=SETTLEMENT)],
        "visits": [visit(home) for _ in range(VISITS)],
    }


class HeldUpload:
    """A push whose body goes out in two halves; the second waits for `release`."""

    def __init__(self, http: httpx.AsyncClient, device: Device, batch: dict[str, Any]) -> None:
        self.body = orjson.dumps(batch)
        self.release = asyncio.Event()
        self.first_half_sent = asyncio.Event()
        headers = {
            **device.auth_headers(),
            "Content-Type": "application/json",
            "Content-Length": str(len(self.body)),
        }
        self.task = asyncio.create_task(
            http.post("/api/v1/sync/push", content=self._halves(), headers=headers)
        )

    async def _halves(self) -> AsyncIterator[bytes]:
        half = len(self.body) // 2
        yield self.body[:half]
        self.first_half_sent.set()
        await self.release.wait()
        yield self.body[half:]


async def wait_for_open_transaction(engine: AsyncEngine) -> None:
    """Until a server connection of this database holds a transaction open, waiting for
    its client: the push is being handled."""
    deadline = time.monotonic() + WAIT_SECONDS
    async with engine.connect() as connection:
        while True:
            busy = await connection.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() AND state = 'idle in transaction'"
                )
            )
            await connection.rollback()
            if busy:
                return
            assert time.monotonic() < deadline, "the push never reached its transaction"
            await asyncio.sleep(0.02)


async def wait_until_refused(server: ServerProcess) -> None:
    """Until the server's port refuses a new connection (it stopped listening)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        try:
            with socket.create_connection((server.host, server.port), timeout=1):
                pass
        except ConnectionRefusedError:
            return
        assert time.monotonic() < deadline, "the server kept accepting connections"
        await asyncio.sleep(0.02)


async def stored(engine: AsyncEngine, batch: dict[str, Any]) -> tuple[int, bool]:
    """How many of the batch's visits are stored, and whether the batch is journaled."""
    ids = [uuid.UUID(v["id"]) for v in batch["visits"]]
    async with AsyncSession(engine) as session:
        visits = await session.scalar(
            select(func.count()).select_from(Visit).where(col(Visit.id).in_(ids))
        )
        journaled = await session.get(SyncBatch, uuid.UUID(batch["batch_id"]))
    return int(visits or 0), journaled is not None


def terminate(server: ServerProcess) -> None:
    assert server.pid is not None
    os.killpg(server.pid, signal.SIGTERM)


async def exit_code(server: ServerProcess) -> int:
    assert server.process is not None
    return await asyncio.to_thread(server.process.wait, WAIT_SECONDS)


async def test_sigterm_lets_a_push_in_flight_finish_and_refuses_new_connections(
    database: str,
) -> None:
    patient = ServerProcess(database, workers=1, env={"FIELDSYNC_SHUTDOWN_GRACE_SECONDS": "30"})
    hasty = ServerProcess(database, workers=1, env={"FIELDSYNC_SHUTDOWN_GRACE_SECONDS": "1"})
    async with engine_for(database) as engine:
        (user,) = await seed(engine, [SETTLEMENT], 1)
        device = phone(patient.base_url, user, seed=3)
        try:
            await asyncio.gather(asyncio.to_thread(patient.start), asyncio.to_thread(hasty.start))
            await device.sign_in()  # its token works on both servers (one database)

            # --- Grace 30 s: the push in flight is answered, then the process exits.
            batch = batch_for(device)
            async with httpx.AsyncClient(base_url=patient.base_url, timeout=30) as http:
                upload = HeldUpload(http, device, batch)
                await upload.first_half_sent.wait()
                await wait_for_open_transaction(engine)
                terminate(patient)
                await wait_until_refused(patient)
                upload.release.set()
                response = await upload.task
            assert response.status_code == 200, response.text
            statuses = {r["status"] for r in response.json()["results"]}
            assert statuses == {"applied"}, response.text
            assert await exit_code(patient) == -signal.SIGTERM, patient.log_tail()
            assert "Application shutdown complete" in patient.log_since_start()
            assert await stored(engine, batch) == (VISITS, True)

            # --- Grace 1 s: a push held longer is cancelled, and leaves nothing behind.
            batch = batch_for(device)
            async with httpx.AsyncClient(base_url=hasty.base_url, timeout=30) as http:
                upload = HeldUpload(http, device, batch)
                await upload.first_half_sent.wait()
                await wait_for_open_transaction(engine)
                terminate(hasty)
                code = await exit_code(hasty)  # within the grace and a little more
                upload.release.set()
                with pytest.raises(httpx.TransportError):
                    await upload.task
            assert code == -signal.SIGTERM, hasty.log_tail()
            assert "timeout graceful shutdown exceeded" in hasty.log_since_start()
            assert await stored(engine, batch) == (0, False)
        finally:
            await device.close()
            patient.close()
            hasty.close()
