"""Pull benchmark: a first sync of 10,000 households and incremental pulls, over HTTP.

A real uvicorn server (2 workers) on PostgreSQL. One settlement holds 10,000 synthetic
households in a folded state (decision, reasons, needs, a Cyrillic address and a
location), inserted straight into the database. A phone assigned to it:

* first sync: pulls from no cursor, 5,000 a page, until `has_more` is false; wall time,
  bytes on the wire with gzip and without, and the server's CPU time (all processes);
* incremental: 100 households change (one pushed batch of 100 visits), then the phone
  pulls from its cursor; the time of that pull.

Each is repeated and the median quoted. Targets on the 2-core machine: first sync under
1 s and under 1.5 MB gzip; incremental pull under 50 ms.

Run: `make bench` or `.venv/bin/python -m bench.pull [--households 10000]`.
Everything it creates is synthetic and lives in a throwaway database.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson

from bench.common import (
    LEAVE,
    NEEDS,
    STAY,
    Device,
    asyncpg_dsn,
    group_cpu_seconds,
    machine,
    median,
    seed_field_workers,
    sign_in,
)
from tests.servers import ServerProcess, migrated_postgres_database

PCODE = "UA6308013001"
STREETS = ["Центральна", "Шкільна", "Садова", "Миру", "Лісова", "Польова", "Зарічна"]


async def seed_households(dsn: str, owner: str, count: int, rng: random.Random) -> list[uuid.UUID]:
    """`count` folded households in the settlement, as a fold would leave them."""
    connection = await asyncpg.connect(dsn)
    try:
        created_by = await connection.fetchval(
            "SELECT id FROM user_account WHERE username = $1", owner
        )
        now = datetime.now(UTC)
        rows = []
        for i in range(count):
            decision = rng.choice(("stay", "stay", "leave", "undecided", None))
            reasons = (
                rng.sample(STAY if decision == "stay" else LEAVE, 2)
                if decision in ("stay", "leave")
                else []
            )
            rows.append(
                (
                    uuid.uuid4(), PCODE, f"вул. {rng.choice(STREETS)}, {i % 300 + 1}",
                    49.7 + rng.random() / 10, 37.6 + rng.random() / 10, rng.uniform(3, 30),
                    rng.randint(1, 6), decision, orjson.dumps(reasons).decode(),
                    orjson.dumps(rng.sample(NEEDS, rng.randint(0, 2))).decode(),
                    "contacted" if decision else None,
                    now - timedelta(hours=rng.uniform(1, 200)) if decision else None,
                    rng.randint(1, 9), created_by, now,
                )
            )  # fmt: skip
        await connection.executemany(
            "INSERT INTO household (id, settlement_pcode, address, lat, lon, accuracy_m, "
            "members, decision, reasons, needs, last_outcome, last_visit_at, version, "
            "created_by, created_at, updated_at, head_name, phone, notes, review, field_stamps, "
            "feed_txid, feed_seq) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10::jsonb, "
            "$11, $12, $13, $14, $15, $15, 'Синтетична особа', '', '', '{}', '{}', 0, 0)",
            rows,
        )
        return [row[0] for row in rows]
    finally:
        await connection.close()


async def first_sync(client: httpx.AsyncClient, device: Device, gzip: bool) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {device.token}"}
    headers["accept-encoding"] = "gzip" if gzip else "identity"
    cursor = None
    wire = raw = households = pages = 0
    started = time.perf_counter()
    while True:
        params: dict[str, Any] = {"limit": 5000}
        if cursor:
            params["cursor"] = cursor
        response = await client.get("/api/v1/sync/pull", params=params, headers=headers)
        response.raise_for_status()
        page = orjson.loads(response.content)
        wire += response.num_bytes_downloaded
        raw += len(response.content)
        households += len(page["households"])
        pages += 1
        cursor = page["cursor"]
        if not page["has_more"]:
            break
    return {
        "seconds": time.perf_counter() - started,
        "wire": wire,
        "raw": raw,
        "households": households,
        "pages": pages,
        "cursor": cursor,
    }


def change_batch(device: Device, households: list[uuid.UUID], rng: random.Random) -> bytes:
    now = datetime.now(UTC)
    visits = []
    for hid in households:
        decision = rng.choice(("stay", "leave"))
        visits.append(
            {
                "id": str(uuid.uuid4()),
                "household_id": str(hid),
                "visited_at": now.isoformat(),
                "outcome": "contacted",
                "decision": decision,
                "reasons": rng.sample(STAY if decision == "stay" else LEAVE, 1),
                "needs": [],
                "consent_to_share": True,
            }
        )
    return orjson.dumps(
        {
            "batch_id": str(uuid.uuid4()),
            "device_id": str(device.device_id),
            "sent_at": now.isoformat(),
            "households": [],
            "visits": visits,
        }
    )


async def run(args: argparse.Namespace, url: str) -> int:
    print("bench/pull.py: pull sync")
    print(f"machine: {machine()}")
    print(
        f"setup: {args.households:,} households in one settlement, 2 server workers on "
        f"PostgreSQL, 5,000 a page; medians of {args.repeats} runs"
    )
    rng = random.Random(7)
    [device] = await seed_field_workers(asyncpg_dsn(url), PCODE, 1)
    ids = await seed_households(asyncpg_dsn(url), device.username, args.households, rng)
    log_path = Path(tempfile.gettempdir()) / "fieldsync-bench-pull-server.log"
    log_path.unlink(missing_ok=True)
    server = ServerProcess(url, workers=2, log_path=log_path)
    with server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60.0) as client:
            await sign_in(client, device)
            await first_sync(client, device, gzip=True)  # warm-up: connections, caches

            runs = []
            for _ in range(args.repeats):
                cpu_before = group_cpu_seconds(server.pid or 0)
                result = await first_sync(client, device, gzip=True)
                result["cpu"] = group_cpu_seconds(server.pid or 0) - cpu_before
                runs.append(result)
            plain = await first_sync(client, device, gzip=False)
            if any(r["households"] != args.households for r in [*runs, plain]):
                print(f"FAILED: a first sync did not return {args.households} households")
                return 1

            cursor = runs[-1]["cursor"]
            incremental = []
            for _ in range(args.repeats):
                changed = rng.sample(ids, 100)
                pushed = await client.post(
                    "/api/v1/sync/push",
                    content=change_batch(device, changed, rng),
                    headers={
                        "authorization": f"Bearer {device.token}",
                        "content-type": "application/json",
                    },
                )
                pushed.raise_for_status()
                started = time.perf_counter()
                response = await client.get(
                    "/api/v1/sync/pull",
                    params={"cursor": cursor, "limit": 5000},
                    headers={
                        "authorization": f"Bearer {device.token}",
                        "accept-encoding": "gzip",
                    },
                )
                incremental.append((time.perf_counter() - started) * 1000)
                response.raise_for_status()
                page = orjson.loads(response.content)
                if len(page["households"]) != 100 or page["has_more"]:
                    print(f"FAILED: the incremental pull gave {len(page['households'])} of 100")
                    return 1
                cursor = page["cursor"]

    seconds = median([r["seconds"] for r in runs])
    wire = median([r["wire"] for r in runs])
    cpu = median([r["cpu"] for r in runs])
    incremental_ms = median(incremental)
    print()
    print(f"first sync ({args.households:,} households, {runs[0]['pages']} pages):")
    print(f"  wall time:          {seconds * 1000:.0f} ms   (target < 1000)")
    print(f"  on the wire, gzip:  {wire / 1e6:.2f} MB   (target < 1.5)")
    print(f"  on the wire, plain: {plain['wire'] / 1e6:.2f} MB   (no Accept-Encoding: gzip)")
    print(f"  server CPU:         {cpu * 1000:.0f} ms")
    print("incremental pull after 100 changes:")
    print(f"  wall time:          {incremental_ms:.1f} ms   (target < 50)")
    print(f"server log: {log_path}")
    met = seconds < 1.0 and wire < 1.5e6 and incremental_ms < 50
    print(f"targets met: {'yes' if met else 'NO'}")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--households", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    with migrated_postgres_database("fieldsync_bench") as url:
        code = asyncio.run(run(args, url))
    raise SystemExit(code)


if __name__ == "__main__":
    main()
