"""Metrics and logs of a real server with two worker processes, on PostgreSQL.

- Whichever worker answers a scrape, it shows what both workers counted
  (prometheus-client's multiprocess mode, set up by `fieldsync serve`).
- Every line the server writes is a JSON object, every request's access line carries
  its request id, and no password, token or household data is in the log file.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import create_engine
from tests.conftest import make_settings
from tests.factories import make_settlement, make_user
from tests.ops.test_metrics import Samples, moved, parse
from tests.ops.traces import leave_traces
from tests.servers import ServerProcess, migrated_postgres_database, running_server
from tests.sync.helpers import household, sign_in_phones, visit

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SETTLEMENT = "UA6308013002"  # not the one tests/ops/traces.py uses
PUSH_ROUTE = "/api/v1/sync/push"
VISITS_PER_BATCH = 3
MAX_PUSHES = 60
#: What `ServerProcess` itself writes into the log before each start.
STARTING = "--- starting:"


@pytest.fixture(scope="module")
def database(postgres_available: bool) -> Iterator[str]:
    if not postgres_available:
        pytest.skip("PostgreSQL is unreachable: several server processes need it")
    with migrated_postgres_database("fieldsync_obs") as url:
        yield url


@pytest.fixture(scope="module")
def server(database: str) -> Iterator[ServerProcess]:
    with running_server(database, workers=2) as started:
        yield started


@pytest.fixture
async def session(database: str) -> AsyncIterator[AsyncSession]:
    engine = create_engine(make_settings(database))
    try:
        async with AsyncSession(engine, expire_on_commit=False) as s:
            yield s
    finally:
        await engine.dispose()


def log_lines(server: ServerProcess) -> list[dict[str, Any]]:
    """Every line of the server's log as JSON (a line that is not JSON fails the test)."""
    entries = []
    for line in server.log_text().splitlines():
        if line.startswith(STARTING) or not line.strip():
            continue
        entry = json.loads(line)
        assert isinstance(entry, dict), line
        entries.append(entry)
    return entries


def served_by(server: ServerProcess) -> dict[str, int]:
    """Request id -> the worker process that served it, from the access log."""
    return {
        e["request_id"]: e["pid"] for e in log_lines(server) if e["logger"] == "fieldsync.access"
    }


async def workers_of(server: ServerProcess, request_ids: list[str]) -> set[int]:
    """The workers that served these requests. A worker writes its access line just
    after the response's last byte: wait a moment for lines not written yet."""
    for _ in range(50):
        by = served_by(server)
        if all(r in by for r in request_ids):
            return {by[r] for r in request_ids}
        await asyncio.sleep(0.1)
    missing = [r for r in request_ids if r not in served_by(server)]
    raise AssertionError(f"no access line for {missing}\n{server.log_tail()}")


async def fresh_get(server: ServerProcess, path: str, request_id: str) -> httpx.Response:
    """On a new connection, so that either worker may take it."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        return await http.get(path, headers={"X-Request-ID": request_id})


async def test_a_scrape_of_either_worker_sums_what_both_counted(
    server: ServerProcess, session: AsyncSession
) -> None:
    await make_settlement(session, SETTLEMENT)
    user = await make_user(session, settlements=[SETTLEMENT])
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        (phone,) = await sign_in_phones([http], [user])
    before = parse((await fresh_get(server, "/metrics", "scrape-before")).text)
    workers = set(server.worker_pids())
    assert len(workers) == 2, server.log_tail()

    async def push_one(n: int) -> None:
        household_id = uuid.uuid4()
        batch = phone.batch(
            households=[household(household_id, settlement=SETTLEMENT)],
            visits=[visit(household_id) for _ in range(VISITS_PER_BATCH)],
        )
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            response = await http.post(
                PUSH_ROUTE, json=batch, headers={**phone.headers, "X-Request-ID": f"push-{n}"}
            )
        assert response.status_code == 200, response.text

    pushes = 0
    while pushes < MAX_PUSHES:
        await asyncio.gather(*(push_one(pushes + i) for i in range(6)))
        pushes += 6
        if await workers_of(server, [f"push-{n}" for n in range(pushes)]) == workers:
            break
    assert await workers_of(server, [f"push-{n}" for n in range(pushes)]) == workers, (
        f"{pushes} pushes all went to one worker"
    )

    # Scrape until each worker has answered one: each must show both workers' counts.
    scrapes: dict[str, Samples] = {}
    for n in range(40):
        request_id = f"scrape-{n}"
        response = await fresh_get(server, "/metrics", request_id)
        assert response.status_code == 200, response.text
        scrapes[request_id] = parse(response.text)
        if await workers_of(server, list(scrapes)) == workers:
            break
    assert await workers_of(server, list(scrapes)) == workers
    by = served_by(server)
    for request_id, after in scrapes.items():
        where = f"{request_id} from worker {by[request_id]}"
        assert moved(before, after, "fieldsync_push_batches_total", outcome="accepted") == pushes
        assert (
            moved(before, after, "fieldsync_push_items_total", kind="visit", status="applied")
            == pushes * VISITS_PER_BATCH
        ), where
        latency = "fieldsync_http_request_duration_seconds_count"
        push_2xx = {"method": "POST", "route": PUSH_ROUTE, "status": "2xx"}
        assert moved(before, after, latency, **push_2xx) == pushes, where


async def test_the_server_log_is_json_lines_without_secrets(
    server: ServerProcess, session: AsyncSession
) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        traces = await leave_traces(http, session)
    await workers_of(server, traces.request_ids)  # every access line is written
    text = server.log_text()
    for secret in traces.secrets:
        assert secret not in text, f"the server log holds {secret[:12]}..."
    entries = log_lines(server)
    assert {e["logger"] for e in entries} >= {"uvicorn.error", "fieldsync.access"}
    access = {e["request_id"]: e for e in entries if e["logger"] == "fieldsync.access"}
    for request_id in traces.request_ids:
        entry = access[request_id]
        assert entry["route"].startswith("/api/v1/"), entry
        assert {"method", "status", "duration_ms", "time", "level", "pid"} <= set(entry)
