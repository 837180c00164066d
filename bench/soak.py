"""Soak benchmark: 200 simulated phones on flaky links against 2 server processes for
5 minutes, with a database outage in the middle; nothing may be lost or stored twice.

Two one-worker `fieldsync serve` processes on a PostgreSQL server of the benchmark's own
(tests/private_postgres.py), each phone talking to one of them. Phones are
bench/device.py simulators, ten to a settlement: each registers a few households, then
every ~20 s (at random) records 1 to 8 visits, now and then a new household or a profile
edit, and syncs (push, then pull until nothing more). Their links drop 5 % of requests
before sending and lose 5 % of answers after the server answered, send 3 % twice at
once, and shuffle the order of pending batches; 10 % of clocks are 2 h fast, 10 % 45 min
slow and 10 % 50 s fast (within the server's tolerance). At 40 % of the run PostgreSQL is
stopped at once (`pg_ctl stop -m immediate`) for `--outage` seconds and started again;
the servers are not restarted. When the time is up every phone syncs until nothing is
pending and pulls once more, and bench/verify.py compares the store with what the phones
recorded and hold.

Reported: visits recorded, sent (every copy that left a phone), stored, duplicates
avoided (copies the server answered without storing again), retries, link faults, 5xx
answers (503 during the outage apart), push and pull latency p50/p99 of 200 answers
(during the load, and in the final syncs, when every phone syncs at once),
and the servers' RSS over time. Targets: zero lost, zero stored twice, zero 5xx but
503 during the outage, every replica equal to the server (and every answer as
journaled, every household the fold of what was recorded).

A sync every ~20 s from each of 200 phones is far more than a field team makes; on the
two-core machine of bench/README.md a sync every ~10 s saturates the servers (pulls
queue for the database pool). Accounts get a cheap argon2id hash (1 MiB, one pass; the
server verifies with the parameters in the hash): this measures sync, not 200
deliberately slow sign-ins. Each server gets a pool of 20 connections
(FIELDSYNC_DB_POOL_SIZE).
Without initdb (no private PostgreSQL) it runs on the shared server and says the outage
was not injected.

Run: `make bench` or `.venv/bin/python -m bench.soak [--seconds 300] [--devices 200]`.
tests/faults/test_soak.py runs 30 s of it in `make test` and asserts the targets.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import asyncpg
import httpx
from argon2 import PasswordHasher

from app.core.db import create_engine
from app.core.errors import DATABASE_RETRY_AFTER_SECONDS
from bench import fieldwork
from bench.common import (
    asyncpg_dsn,
    group_cpu_seconds,
    group_rss_bytes,
    machine,
    median,
    percentile,
)
from bench.device import PULL, PUSH, Backoff, Device, DeviceError, Link, Stats
from bench.verify import Verification, verify
from tests.conftest import make_settings
from tests.private_postgres import PrivatePostgres, unavailable_reason
from tests.servers import ServerProcess, migrated_postgres_database

PASSWORD = "soak-password-synthetic"  # noqa: S105
PER_SETTLEMENT = 10
FLAKY = Link(drop_before=0.05, drop_after=0.05, duplicate=0.03, reorder=True)
SKEWS = (timedelta(hours=2), timedelta(minutes=-45), timedelta(seconds=50))
BACKOFF = Backoff(base=0.5, cap=8.0, give_up_after=180.0)
#: After PostgreSQL is back, a 503 may still come while the servers' pools reconnect.
OUTAGE_GRACE_SECONDS = 2.0


@dataclass
class Options:
    seconds: float = 300.0
    devices: int = 200
    period: float = 20.0
    outage: float = 10.0
    rss_every: float = 30.0
    seed: int = 1
    #: Why there is no outage, when there is none.
    no_outage_reason: str = "--outage 0"


@dataclass
class Phone:
    device: Device
    rng: random.Random
    settlement: str
    households: list[str] = field(default_factory=list)
    syncs: int = 0
    failure: str | None = None

    def known(self) -> list[str]:
        return sorted(set(self.households) | set(self.device.replica))


@dataclass
class Outage:
    injected: bool
    note: str
    started: float = 0.0
    #: When both servers answered /readyz 200 again.
    recovered: float = 0.0

    def covers(self, at: float) -> bool:
        return self.injected and self.started <= at <= self.recovered + OUTAGE_GRACE_SECONDS


@dataclass
class Result:
    options: Options
    phones: list[Phone]
    outage: Outage
    report: Verification
    rss: list[tuple[float, list[int]]]
    #: Seconds of each phase: servers started, load, final syncs, verification.
    phases: dict[str, float]
    #: CPU seconds of the servers (both) and of this process (the phones) during the load.
    cpu: dict[str, float]
    #: Milliseconds of the 200 answers, by request kind: during the load, and in the final
    #: syncs (every phone at once).
    latency: dict[str, dict[str, list[float]]]
    logs: list[Path]

    @property
    def stats(self) -> list[Stats]:
        return [p.device.stats for p in self.phones]

    def server_errors(self) -> tuple[int, Counter[int]]:
        """503s during the outage, and every other 5xx by status."""
        during, other = 0, Counter[int]()
        for stats in self.stats:
            for at, status in stats.server_errors:
                if status == 503 and self.outage.covers(at):
                    during += 1
                else:
                    other[status] += 1
        return during, other

    def targets(self) -> list[tuple[str, bool]]:
        report = self.report
        _, other = self.server_errors()
        failed = [p for p in self.phones if p.failure]
        return [
            (f"lost visits and edits: {len(report.lost)} (target 0)", not report.lost),
            (f"stored twice or never recorded: {len(report.extra)} (target 0)", not report.extra),
            (
                f"5xx other than 503 during the outage: {sum(other.values())} (target 0)",
                not other,
            ),
            (
                f"replicas equal to the server: {len(self.phones) - _phones_off(report)} of "
                f"{len(self.phones)} (differences {len(report.replicas)})",
                not report.replicas,
            ),
            (
                f"answers as journaled and state = fold of what was recorded: "
                f"{len(report.contradicted) + len(report.fold)} differences (target 0)",
                not report.contradicted and not report.fold,
            ),
            (f"phones that gave up: {len(failed)} (target 0)", not failed),
        ]

    @property
    def met(self) -> bool:
        return all(ok for _, ok in self.targets())

    def lines(self) -> list[str]:
        o, stats, report = self.options, self.stats, self.report
        during, other = self.server_errors()
        push, pull = self.latency["load"][PUSH], self.latency["load"][PULL]
        last = self.latency["final syncs"]
        sent = sum(s.visits_transmitted for s in stats)
        answered = sum(s.visits_answered for s in stats)
        statuses: Counter[int] = sum((s.statuses for s in stats), start=Counter())
        lines = [
            f"load ({o.seconds:.0f} s, then every phone synced until nothing was pending):",
            f"  syncs:              {sum(p.syncs for p in self.phones):,}",
            f"  visits recorded:    {report.visits_recorded:,}",
            f"  visits sent:        {sent:,}   (every copy that left a phone)",
            f"  visits stored:      {report.visits_stored:,}",
            f"  duplicates avoided: {answered - report.visits_stored:,}   (copies the server "
            "answered without storing them again)",
            f"  household records:  {report.edits_recorded:,} recorded (new households and "
            f"edits), {report.edits_stored:,} stored",
            f"  retries:            {sum(s.retries for s in stats):,}   (network errors "
            f"{sum(s.network_errors for s in stats):,}, 503 {statuses[503]:,}, "
            f"429 {statuses[429]:,})",
            f"  link faults:        {sum(s.dropped_before for s in stats):,} dropped before "
            f"sending, {sum(s.dropped_after for s in stats):,} answers lost, "
            f"{sum(s.duplicated for s in stats):,} sent twice",
            f"  5xx:                {during:,} x 503 during the outage; other 5xx: "
            f"{sum(other.values())} {dict(other) if other else ''}".rstrip(),
            f"  push latency:       {_p50_p99(push)}   ({len(push):,} answered 200 during the "
            "load)",
            f"  pull latency:       {_p50_p99(pull)}   ({len(pull):,} pages during the load)",
            f"  final syncs:        push {_p50_p99(last[PUSH])}; pull {_p50_p99(last[PULL])}"
            "   (every phone at once)",
            f"  outage:             {self.outage.note}",
            f"  CPU during the load: servers {self.cpu['servers']:.0f} s, phones (this "
            f"process) {self.cpu['phones']:.0f} s, in {self.phases['load']:.0f} s on "
            f"{os.cpu_count()} cores",
            "  phases:             "
            + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in self.phases.items()),
            f"server RSS (MiB), every {o.rss_every:.0f} s:",
        ]
        for index in range(len(self.logs)):
            series = " ".join(f"{sample[1][index] / 2**20:.0f}" for sample in self.rss)
            lines.append(f"  server {index + 1}: {series}")
        lines.append("targets:")
        lines += [f"  {text}: {'met' if ok else 'NOT met'}" for text, ok in self.targets()]
        if not report.ok:
            lines.append("problems (bench/verify.py):")
            lines += [f"  {line}" for line in report.summary().splitlines()[1:]]
        lines += [f"phone failure: {p.failure}" for p in self.phones if p.failure][:10]
        lines.append(f"server logs: {', '.join(str(p) for p in self.logs)}")
        lines.append(f"targets met: {'yes' if self.met else 'NO'}")
        return lines


def _p50_p99(milliseconds: list[float]) -> str:
    if not milliseconds:
        return "none"
    return f"p50 {median(milliseconds):.0f} ms, p99 {percentile(milliseconds, 0.99):.0f} ms"


def _phones_off(report: Verification) -> int:
    return len({line.split(":", 1)[0] for line in report.replicas})


async def seed_accounts(url: str, devices: int) -> list[tuple[str, str]]:
    """Settlements (ten phones each) and one field worker per phone, inserted directly;
    returns (username, settlement) pairs."""
    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)
    settlements = [f"UA63080{n:05d}" for n in range(1, (devices - 1) // PER_SETTLEMENT + 2)]
    accounts = [(f"soak-{i:03d}", settlements[i // PER_SETTLEMENT]) for i in range(devices)]
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await connection.executemany(
            "INSERT INTO settlement (pcode, katottg, category, name_uk, name_en, hromada_pcode, "
            "hromada_uk, hromada_en, raion_pcode, oblast_pcode, evacuation_ordered, updated_at) "
            "VALUES ($1, $2, 'village', 'Синтетичне', 'Syntetychne', $3, 'Синтетична', "
            "'Syntetychna', $4, $5, true, now())",
            [(p, p + "0000000", p[:9], p[:6], p[:4]) for p in settlements],
        )
        users = [(uuid.uuid4(), name, pcode) for name, pcode in accounts]
        await connection.executemany(
            "INSERT INTO user_account (id, username, full_name, role, password_hash, is_active, "
            "created_at, updated_at) VALUES ($1, $2, 'Synthetic soak worker', 'field_worker', "
            "$3, true, now(), now())",
            [(uid, name, cheap) for uid, name, _ in users],
        )
        await connection.executemany(
            "INSERT INTO settlement_assignment (user_id, settlement_pcode, assigned_at) "
            "VALUES ($1, $2, now())",
            [(uid, pcode) for uid, _, pcode in users],
        )
    finally:
        await connection.close()
    return accounts


def _make_phone(index: int, base_url: str, username: str, settlement: str, seed: int) -> Phone:
    rng = random.Random(seed * 100_003 + index)
    skew = SKEWS[index % 10] if index % 10 < len(SKEWS) else timedelta(0)
    device = Device(
        base_url,
        username,
        PASSWORD,
        link=FLAKY,
        backoff=BACKOFF,
        clock_skew=skew,
        seed=rng.randrange(2**32),
        batch_size=50,
    )
    return Phone(device, rng, settlement)


async def _sync(phone: Phone) -> None:
    await phone.device.sync()
    phone.syncs += 1


async def _work(phone: Phone, stop_at: float, period: float) -> None:
    """A field worker's day: record, sync, wait; until the time is up."""
    rng, device = phone.rng, phone.device
    try:
        await asyncio.sleep(rng.uniform(0, period))
        await device.sign_in()
        await device.pull()
        for _ in range(3):
            phone.households.append(fieldwork.new_household(rng, device, phone.settlement))
        await _sync(phone)
        while True:
            pause = rng.uniform(0.5, 1.5) * period
            if time.monotonic() + pause >= stop_at:
                break
            await asyncio.sleep(pause)
            known = phone.known()
            if rng.random() < 0.1:
                phone.households.append(fieldwork.new_household(rng, device, phone.settlement))
            if rng.random() < 0.15:
                fieldwork.edit_household(rng, device, rng.choice(known))
            for _ in range(rng.randint(1, 8)):
                fieldwork.visit(rng, device, rng.choice(known))
            await _sync(phone)
    except (DeviceError, httpx.HTTPError) as exc:
        phone.failure = f"{device.username}: {type(exc).__name__}: {exc}"


async def _drain(phone: Phone) -> None:
    """Sync until nothing is pending (the link stays flaky)."""
    if phone.failure:
        return
    try:
        while True:
            await _sync(phone)
            if phone.device.pending() == 0:
                return
    except (DeviceError, httpx.HTTPError) as exc:
        phone.failure = f"{phone.device.username}: {type(exc).__name__}: {exc}"


async def _sample_rss(
    servers: list[ServerProcess], every: float, stop: asyncio.Event
) -> list[tuple[float, list[int]]]:
    started = time.monotonic()
    samples = []
    while True:
        samples.append((time.monotonic() - started, [group_rss_bytes(s.pid or 0) for s in servers]))
        try:
            await asyncio.wait_for(stop.wait(), timeout=every)
        except TimeoutError:
            continue
        samples.append((time.monotonic() - started, [group_rss_bytes(s.pid or 0) for s in servers]))
        return samples


async def _inject_outage(
    postgres: PrivatePostgres, servers: list[ServerProcess], begin: float, at: float, seconds: float
) -> Outage:
    """Stop PostgreSQL `at` seconds after `begin` for `seconds`, start it again, and wait
    until both servers are ready (they are not restarted)."""
    await asyncio.sleep(max(0.0, begin + at - time.monotonic()))
    outage = Outage(injected=True, note="", started=time.monotonic())
    await asyncio.to_thread(postgres.stop, immediate=True)
    await asyncio.sleep(seconds)
    await asyncio.to_thread(postgres.start)
    restarted = time.monotonic()
    async with httpx.AsyncClient(timeout=5) as http:
        for server in servers:
            while True:
                ready = await http.get(f"{server.base_url}/readyz")
                if ready.status_code == 200:
                    break
                await asyncio.sleep(0.1)
    outage.recovered = time.monotonic()
    outage.note = (
        f"PostgreSQL stopped (immediate) at {outage.started - begin:.0f} s for "
        f"{restarted - outage.started:.1f} s; both servers ready "
        f"{outage.recovered - restarted:.1f} s after it was back, not restarted "
        f"(they answer 503 with Retry-After {DATABASE_RETRY_AFTER_SECONDS} s meanwhile)"
    )
    return outage


async def run_soak(
    options: Options, url: str, postgres: PrivatePostgres | None, log_dir: Path | None = None
) -> Result:
    """The whole soak on a migrated database at `url`; `postgres` is stopped and started
    for the outage (None: no outage). The servers' logs go to `log_dir` (a new temporary
    directory, kept, if None)."""
    accounts = await seed_accounts(url, options.devices)
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="fieldsync-soak-"))
    env = {"FIELDSYNC_DB_POOL_SIZE": "20"}
    servers = [
        ServerProcess(url, workers=1, env=env, log_path=log_dir / f"server-{i + 1}.log")
        for i in range(2)
    ]
    phases: dict[str, float] = {}
    mark = time.monotonic()

    def phase(name: str) -> None:
        nonlocal mark
        phases[name] = time.monotonic() - mark
        mark = time.monotonic()

    try:
        await asyncio.gather(*(asyncio.to_thread(s.start) for s in servers))
        phase("servers started")
        phones = [
            _make_phone(i, servers[i % 2].base_url, name, pcode, options.seed)
            for i, (name, pcode) in enumerate(accounts)
        ]
        try:
            begin = time.monotonic()
            cpu_before = _cpu(servers)
            stop_at = begin + options.seconds
            stop_sampling = asyncio.Event()
            sampler = asyncio.create_task(_sample_rss(servers, options.rss_every, stop_sampling))
            outage_task = None
            if postgres is not None and options.outage > 0:
                outage_task = asyncio.create_task(
                    _inject_outage(postgres, servers, begin, 0.4 * options.seconds, options.outage)
                )
            await asyncio.gather(*(_work(p, stop_at, options.period) for p in phones))
            cpu = {k: after - cpu_before[k] for k, after in _cpu(servers).items()}
            marks = [{k: len(p.device.stats.latencies[k]) for k in (PUSH, PULL)} for p in phones]
            phase("load")
            outage = (
                await outage_task
                if outage_task is not None
                else Outage(injected=False, note=f"NOT injected: {options.no_outage_reason}")
            )
            await asyncio.gather(*(_drain(p) for p in phones))
            # Everyone pulls once more: the last pushes of others came after their sync.
            await asyncio.gather(*(_drain(p) for p in phones))
            phase("final syncs")
            latency = {
                "load": _latencies(phones, marks, before=True),
                "final syncs": _latencies(phones, marks, before=False),
            }
            stop_sampling.set()
            rss = await sampler
            engine = create_engine(make_settings(url))
            try:
                report = await verify(engine, [p.device for p in phones])
            finally:
                await engine.dispose()
            phase("verification")
        finally:
            for p in phones:
                await p.device.close()
    finally:
        for server in servers:
            server.stop()
    logs = [s.log_path for s in servers]
    return Result(options, phones, outage, report, rss, phases, cpu, latency, logs)


def _latencies(
    phones: list[Phone], marks: list[dict[str, int]], *, before: bool
) -> dict[str, list[float]]:
    """The phones' 200 answers in milliseconds, by kind: those before each phone's mark,
    or those after it."""
    result: dict[str, list[float]] = {PUSH: [], PULL: []}
    for phone, mark in zip(phones, marks, strict=True):
        for kind, values in result.items():
            seconds = phone.device.stats.latencies[kind]
            chosen = seconds[: mark[kind]] if before else seconds[mark[kind] :]
            values.extend(s * 1000 for s in chosen)
    return result


def _cpu(servers: list[ServerProcess]) -> dict[str, float]:
    times = os.times()
    return {
        "servers": sum(group_cpu_seconds(s.pid or 0) for s in servers),
        "phones": times.user + times.system,
    }


def header(options: Options) -> list[str]:
    return [
        f"bench/soak.py: {options.devices} phones on flaky links, 2 server processes, "
        f"PostgreSQL, {options.seconds:.0f} s",
        f"machine: {machine()}",
        f"setup: {options.devices} phones ({PER_SETTLEMENT} a settlement), a sync every "
        f"~{options.period:.0f} s; link: {FLAKY.drop_before:.0%} dropped before sending, "
        f"{FLAKY.drop_after:.0%} answers lost, {FLAKY.duplicate:.0%} sent twice, batches "
        "reordered; clocks: 10 % 2 h fast, 10 % 45 min slow, 10 % 50 s fast; two one-worker "
        "servers; the client on the same machine",
    ]


@contextmanager
def database() -> Iterator[tuple[str, PrivatePostgres | None, str]]:
    """A migrated database: on a PostgreSQL of its own if possible (the outage needs it)."""
    reason = unavailable_reason()
    if reason is None:
        with PrivatePostgres() as postgres:
            yield postgres.create_database(), postgres, ""
        return
    with migrated_postgres_database("fieldsync_soak") as url:
        yield url, None, reason


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=300.0, help="how long the load runs")
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--period", type=float, default=20.0, help="mean seconds between syncs")
    parser.add_argument("--outage", type=float, default=10.0, help="seconds without PostgreSQL")
    parser.add_argument("--rss-every", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    options = Options(
        seconds=args.seconds,
        devices=args.devices,
        period=args.period,
        outage=args.outage,
        rss_every=args.rss_every,
        seed=args.seed,
    )
    for line in header(options):
        print(line, flush=True)
    with database() as (url, postgres, reason):
        if postgres is None:
            options.no_outage_reason = f"{reason}; ran on the shared PostgreSQL"
            print(f"outage: {options.no_outage_reason}", flush=True)
        result = asyncio.run(run_soak(options, url, postgres))
    print()
    for line in result.lines():
        print(line)
    raise SystemExit(0)


if __name__ == "__main__":
    main()
