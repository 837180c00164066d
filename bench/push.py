"""Push benchmark: a real uvicorn server (2 workers) on PostgreSQL, driven over HTTP.

Simulated phones each have their own account, device id and token, and start
staggered. The first seconds are warm-up and are not counted. Two phases:

* capacity: every phone pushes 200-visit batches back to back; visits/s is compared,
  in the same run, with two plain bulk INSERTs of rows of the same shape into the
  same table, straight to PostgreSQL, 200 rows and one transaction a batch (asyncpg
  executemany, and one INSERT ... SELECT FROM unnest); the ratio is to the faster;
* field load: every phone pushes one 200-visit batch every 5 s; batch latency
  p50/p99 and the server's peak RSS (all its processes) are reported.

Targets on the 2-core machine: capacity >= 10,000 visits/s and ratio >= 0.1;
field load p50 < 50 ms and p99 < 250 ms.

Run: `make bench` or `.venv/bin/python -m bench.push [--devices 50] [--seconds 20]`.
Everything it creates is synthetic and lives in a throwaway database.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
import uuid
from dataclasses import dataclass, field
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
    group_rss_bytes,
    machine,
    median,
    percentile,
    seed_field_workers,
    sign_in,
)
from tests.servers import ServerProcess, migrated_postgres_database

PCODE = "UA6308013001"
CROSS_VISIT_SHARE = 0.05  # visits to another phone's households, so conflict checks find rivals


@dataclass
class Phone:
    device: Device
    households: list[str]
    neighbours: list[str]
    rng: random.Random
    latencies: list[tuple[float, float, int]] = field(default_factory=list)
    errors: int = 0
    retries: int = 0

    def visit(self, household_id: str, at: datetime) -> dict[str, Any]:
        decision = self.rng.choice(("stay", "stay", "leave", "undecided"))
        reasons = (
            self.rng.sample(STAY if decision == "stay" else LEAVE, 2)
            if decision != "undecided"
            else []
        )
        return {
            "id": str(uuid.uuid4()),
            "household_id": household_id,
            "visited_at": (at - timedelta(seconds=self.rng.uniform(0, 3600))).isoformat(),
            "outcome": "contacted" if self.rng.random() < 0.85 else "not_home",
            "decision": decision,
            "reasons": reasons,
            "needs": self.rng.sample(NEEDS, self.rng.randint(0, 2)),
            "people_present": self.rng.randint(1, 4),
            "consent_to_share": self.rng.random() < 0.8,
            "notes": "Синтетичний візит для вимірювання.",
        }

    def batch(self, size: int) -> bytes:
        now = datetime.now(UTC)
        visits = []
        for household_id in self.rng.sample(self.households, size):
            if self.rng.random() < CROSS_VISIT_SHARE:
                household_id = self.rng.choice(self.neighbours)
            visit = self.visit(household_id, now)
            if visit["outcome"] != "contacted":
                visit["decision"], visit["reasons"] = None, []
            visits.append(visit)
        return orjson.dumps(
            {
                "batch_id": str(uuid.uuid4()),
                "device_id": str(self.device.device_id),
                "sent_at": now.isoformat(),
                "app_version": "bench",
                "households": [],
                "visits": visits,
            }
        )


async def send(client: httpx.AsyncClient, phone: Phone, body: bytes) -> httpx.Response:
    """POST a batch; on a dropped connection send the same batch again, as a phone does
    (the batch id makes that safe). Keep-alive connections idle past the server's
    timeout are closed under the client now and then."""
    headers = {
        "authorization": f"Bearer {phone.device.token}",
        "content-type": "application/json",
    }
    for _ in range(2):
        try:
            return await client.post("/api/v1/sync/push", content=body, headers=headers)
        except httpx.TransportError:
            phone.retries += 1
    return await client.post("/api/v1/sync/push", content=body, headers=headers)


async def _post(client: httpx.AsyncClient, phone: Phone, body: bytes) -> None:
    started = time.perf_counter()
    response = await send(client, phone, body)
    finished = time.perf_counter()
    if response.status_code != 200 or b'"rejected"' in response.content:
        phone.errors += 1
    phone.latencies.append((started, finished, body.count(b'"household_id"')))


async def register_households(client: httpx.AsyncClient, phone: Phone) -> None:
    now = datetime.now(UTC)
    households = [
        {
            "id": h,
            "settlement": PCODE,
            "address": f"вул. Синтетична, {i + 1}",
            "members": phone.rng.randint(1, 5),
            "observed_at": now.isoformat(),
        }
        for i, h in enumerate(phone.households)
    ]
    body = orjson.dumps(
        {
            "batch_id": str(uuid.uuid4()),
            "device_id": str(phone.device.device_id),
            "sent_at": now.isoformat(),
            "households": households,
            "visits": [],
        }
    )
    (await send(client, phone, body)).raise_for_status()


async def back_to_back(
    client: httpx.AsyncClient, phone: Phone, start: float, stop: float, size: int
) -> None:
    await asyncio.sleep(max(0.0, start - time.perf_counter()))
    while time.perf_counter() < stop:
        await _post(client, phone, phone.batch(size))


async def every(
    client: httpx.AsyncClient, phone: Phone, start: float, stop: float, size: int, period: float
) -> None:
    next_at = start
    while next_at < stop:
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        await _post(client, phone, phone.batch(size))
        next_at += period


async def sample_rss(group: int, stop: float, peaks: list[int]) -> None:
    while time.perf_counter() < stop:
        peaks.append(group_rss_bytes(group))
        await asyncio.sleep(0.5)


_INSERT_COLUMNS = (
    "id, household_id, device_id, recorded_by, batch_id, visited_at_device, visited_at, "
    "outcome, decision, reasons, people_present, needs, consent_to_share, notes, content_hash, "
    "clock_corrected, future_clamped, reason_note, destination, fold_state, review_state, "
    "review_note, received_at"
)
_CONSTANTS = "false, false, '', '', 'folded', 'unreviewed', '', now()"
#: One row per execution, 200 executions a batch (asyncpg executemany).
EXECUTEMANY_SQL = (
    f"INSERT INTO visit ({_INSERT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, "  # noqa: S608
    f"$10::jsonb, $11, $12::jsonb, $13, $14, $15, {_CONSTANTS})"
)
#: One statement a batch, each column one array.
UNNEST_SQL = (
    f"INSERT INTO visit ({_INSERT_COLUMNS}) SELECT i, h, d, r, b, vd, v, o, dc, rs::jsonb, p, "  # noqa: S608
    f"n::jsonb, c, nt, ch, {_CONSTANTS} FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], "
    "$4::uuid[], $5::uuid[], $6::timestamptz[], $7::timestamptz[], $8::text[], $9::text[], "
    "$10::text[], $11::int[], $12::text[], $13::bool[], $14::text[], $15::text[]) "
    "AS t(i, h, d, r, b, vd, v, o, dc, rs, p, n, c, nt, ch)"
)


def _insert_batches(
    phones: list[Phone], user_of: dict[uuid.UUID, uuid.UUID], rows: int, size: int
) -> list[list[tuple[Any, ...]]]:
    batches = []
    for i in range(rows // size):
        phone = phones[i % len(phones)]
        now = datetime.now(UTC)
        batch_id = uuid.uuid4()
        args = []
        for _ in range(size):
            v = phone.visit(phone.rng.choice(phone.households), now)
            at = datetime.fromisoformat(v["visited_at"])
            args.append(
                (
                    uuid.UUID(v["id"]), uuid.UUID(v["household_id"]),
                    phone.device.device_id, user_of[phone.device.device_id], batch_id,
                    at, at, v["outcome"], v["decision"],
                    orjson.dumps(v["reasons"]).decode(), v["people_present"],
                    orjson.dumps(v["needs"]).decode(), v["consent_to_share"], v["notes"],
                    uuid.uuid4().hex + uuid.uuid4().hex,
                )
            )  # fmt: skip
        batches.append(args)
    return batches


async def bulk_insert_rates(
    dsn: str, phones: list[Phone], rows: int, size: int
) -> tuple[float, float]:
    """Rows/s of two plain INSERTs of visits shaped like the pushed ones, `size` rows and
    one transaction a batch: asyncpg executemany, and one INSERT ... SELECT FROM unnest."""
    connection = await asyncpg.connect(dsn)
    try:
        user_of = dict(
            await connection.fetch(
                "SELECT d.id, d.owner_id FROM device d WHERE d.id = ANY($1::uuid[])",
                [p.device.device_id for p in phones],
            )
        )
        rates = []
        for sql, columns in ((EXECUTEMANY_SQL, False), (UNNEST_SQL, True)):
            statement = await connection.prepare(sql)
            batches = _insert_batches(phones, user_of, rows, size)
            started = time.perf_counter()
            for args in batches:
                async with connection.transaction():
                    if columns:
                        await statement.fetch(*(list(column) for column in zip(*args, strict=True)))
                    else:
                        await statement.executemany(args)
            rates.append((len(batches) * size) / (time.perf_counter() - started))
        return rates[0], rates[1]
    finally:
        await connection.close()


def visits_per_second(phones: list[Phone], window_start: float, window_end: float) -> float:
    done = sum(
        n for p in phones for (_, end, n) in p.latencies if window_start <= end <= window_end
    )
    return done / (window_end - window_start)


async def run(args: argparse.Namespace, url: str) -> int:
    print("bench/push.py: batched push sync")
    print(f"machine: {machine()}")
    print(
        f"setup: {args.devices} phones, {args.batch}-visit batches, 2 server workers on "
        f"PostgreSQL; warm-up {args.warmup:.0f} s not counted"
    )
    devices = await seed_field_workers(asyncpg_dsn(url), PCODE, args.devices)
    log_path = Path(tempfile.gettempdir()) / "fieldsync-bench-push-server.log"
    log_path.unlink(missing_ok=True)
    server = ServerProcess(url, workers=2, env={"FIELDSYNC_DB_POOL_SIZE": "20"}, log_path=log_path)
    with server:
        limits = httpx.Limits(
            max_connections=args.devices + 10, max_keepalive_connections=args.devices + 10
        )
        timeout = httpx.Timeout(60.0)
        async with httpx.AsyncClient(
            base_url=server.base_url, limits=limits, timeout=timeout
        ) as client:
            await asyncio.gather(*(sign_in(client, d) for d in devices))
            households = {
                d.username: [str(uuid.uuid4()) for _ in range(args.batch)] for d in devices
            }
            phones = []
            for i, d in enumerate(devices):
                # Half a period away in the stagger, so neighbours do not push at the same moment.
                neighbour = devices[(i + len(devices) // 2) % len(devices)].username
                rng = random.Random(i)
                phones.append(Phone(d, households[d.username], households[neighbour], rng))
            for phone in phones:
                await register_households(client, phone)

            # Capacity: back to back, staggered over the first second.
            begin = time.perf_counter() + 0.5
            stop = begin + args.warmup + args.seconds
            cpu_before = group_cpu_seconds(server.pid or 0)
            await asyncio.gather(
                *(
                    back_to_back(client, p, begin + i / len(phones), stop, args.batch)
                    for i, p in enumerate(phones)
                )
            )
            window = (begin + args.warmup, stop)
            capacity = visits_per_second(phones, *window)
            server_cpu = group_cpu_seconds(server.pid or 0) - cpu_before
            capacity_latency = [
                (e - s) * 1000
                for p in phones
                for (s, e, _) in p.latencies
                if window[0] <= e <= window[1]
            ]
            capacity_errors = sum(p.errors for p in phones)
            for p in phones:
                p.latencies.clear()
                p.errors = 0

            # Field load: one batch per phone every `period` seconds, staggered.
            period = args.period
            begin = time.perf_counter() + 0.5
            stop = begin + args.warmup + args.field_seconds
            peaks: list[int] = []
            sampler = asyncio.create_task(sample_rss(server.pid or 0, stop, peaks))
            await asyncio.gather(
                *(
                    every(client, p, begin + period * i / len(phones), stop, args.batch, period)
                    for i, p in enumerate(phones)
                )
            )
            await sampler
            field_latency = [
                (e - s) * 1000
                for p in phones
                for (s, e, _) in p.latencies
                if s >= begin + args.warmup
            ]
            field_errors = sum(p.errors for p in phones)
        executemany_rate, unnest_rate = await bulk_insert_rates(
            asyncpg_dsn(url), phones, args.insert_rows, args.batch
        )

    insert_rate = max(executemany_rate, unnest_rate)
    ratio = capacity / insert_rate
    offered = args.devices * args.batch / args.period
    cap50, cap99 = median(capacity_latency), percentile(capacity_latency, 0.99)
    field50, field99 = median(field_latency), percentile(field_latency, 0.99)
    rss_mib = max(peaks, default=0) / 1024 / 1024
    print()
    print(f"capacity ({args.seconds:.0f} s counted):")
    print(f"  push:               {capacity:,.0f} visits/s   (target >= 10,000)")
    size = args.batch
    print(f"  plain bulk INSERT:  {executemany_rate:,.0f} rows/s   (executemany, {size} a go)")
    print(f"                      {unnest_rate:,.0f} rows/s   (one unnest INSERT, {size} a go)")
    print(f"  ratio:              {ratio:.2f}   (to the faster INSERT; target >= 0.1)")
    print(f"  batch latency:      p50 {cap50:.0f} ms, p99 {cap99:.0f} ms")
    print(f"  server CPU:         {server_cpu:.1f} s in {args.warmup + args.seconds:.0f} s")
    print(f"  failed batches:     {capacity_errors}")
    print(f"field load ({offered:,.0f} visits/s offered, {args.field_seconds:.0f} s counted):")
    print(f"  batches:            {len(field_latency)}")
    print(f"  batch latency:      p50 {field50:.1f} ms (target < 50)")
    print(f"                      p99 {field99:.1f} ms (target < 250)")
    print(f"  server peak RSS:    {rss_mib:.0f} MiB (all server processes)")
    print(f"  failed batches:     {field_errors}")
    print(f"retried sends (dropped connections): {sum(p.retries for p in phones)}")
    print(f"server log: {log_path}")
    met = (
        capacity >= 10_000
        and ratio >= 0.1
        and field50 < 50
        and field99 < 250
        and capacity_errors == 0
        and field_errors == 0
    )
    print(f"targets met: {'yes' if met else 'NO'}")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=20.0, help="counted capacity seconds")
    parser.add_argument(
        "--field-seconds", type=float, default=30.0, help="counted field-load seconds"
    )
    parser.add_argument(
        "--period", type=float, default=5.0, help="seconds between a phone's batches"
    )
    parser.add_argument("--insert-rows", type=int, default=100_000)
    args = parser.parse_args()
    with migrated_postgres_database("fieldsync_bench") as url:
        code = asyncio.run(run(args, url))
    raise SystemExit(code)


if __name__ == "__main__":
    main()
