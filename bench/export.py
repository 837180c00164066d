"""Export benchmark: households, visits and settlement summaries streamed over HTTP.

A real uvicorn server (1 worker) on PostgreSQL. The database holds a synthetic dataset,
inserted straight with `INSERT ... SELECT FROM generate_series`: 200,000 households
and 1,000,000 visits (5 a household) in 20 settlements of Petropavlivska and Kurylivska
hromadas (the settlements are the bundled KATOTTG reference data; everything else is
made up). Each household's folded state (decision, reasons, needs, last visit, consent,
last outcome) is the one its visits give: its latest visit carries it.

A supervisor with no assignment (who sees everything) downloads, with httpx streaming
and `Accept-Encoding: gzip` as browsers and HTTP libraries send it:
households as CSV, XLSX, GeoJSON and JSON Lines; visits as CSV and JSON Lines; the
settlement summary as CSV; then the CSVs once more without gzip. For each: the time to
the first byte of the body and to the first data row, the total time, rows a second
(`X-Export-Rows` over the total time), bytes on the wire and decoded, and the growth of
the server's resident memory (sampled every 50 ms) over its level just before the
request. Every download is read back once the clock stops (CSV and JSON Lines row by
row, GeoJSON whole, XLSX unzipped with its rows counted) and its rows counted against
`X-Export-Rows`, so a broken export cannot look fast.
Each is repeated and the median quoted. Then, in the same run, the COPY statements
behind the household and visit CSVs are run with no server at all, to a client that
throws the bytes away: what the database alone writes on this machine, and the share of
it each CSV export reaches over HTTP. The export's time also holds what comes before
its COPY (the row count, the audit record) and the share still depends on how the 2
cores are shared, but it moves less between machines than rows/s do.

Targets: CSV >= 100,000 rows/s; first byte < 1 s; RSS growth < 100 MB whatever the row
count.

Run: `make bench` or `.venv/bin/python -m bench.export [--households 200000]
[--visits-per-household 5]`. Everything it creates lives in a throwaway database.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
import random
import tempfile
import time
import uuid
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import asyncpg
import httpx
import orjson
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from app.core.config import Settings
from app.core.security import hash_password
from app.exports import repository, service
from app.exports.repository import Filters
from app.settlements.service import BUNDLED_SETTLEMENTS, parse_settlements_csv
from app.visits import codes
from bench.common import (
    PASSWORD,
    asyncpg_dsn,
    group_cpu_seconds,
    group_rss_bytes,
    machine,
    median,
)
from tests.servers import ServerProcess, migrated_postgres_database

#: The settlements the synthetic households live in: Petropavlivska hromada, then Kurylivska.
HROMADAS = ("UA6308013", "UA6308011")
SETTLEMENTS = 20
SUPERVISOR = "bench-export-supervisor"
SAMPLE_SECONDS = 0.05
MB = 1_000_000

TARGET_CSV_ROWS_PER_S = 100_000
TARGET_FIRST_BYTE_S = 1.0
TARGET_RSS_GROWTH = 100 * MB

#: What is exported, in order: kind, format, Accept-Encoding. `+protected` asks for the
#: partner protection (pseudonyms, consenting households only, coarsened values).
CASES = (
    ("households", "csv", "gzip"),
    ("households+protected", "csv", "gzip"),
    ("households", "xlsx", "gzip"),
    ("households", "geojson", "gzip"),
    ("households", "jsonl", "gzip"),
    ("visits", "csv", "gzip"),
    ("visits", "jsonl", "gzip"),
    ("settlements", "csv", "gzip"),
    ("households", "csv", "identity"),
    ("visits", "csv", "identity"),
    ("households+protected", "csv", "identity"),
)


# Seeding ---------------------------------------------------------------------------------


def _combos(rng: random.Random, pool: list[str], low: int, high: int, count: int) -> list[str]:
    """`count` JSON lists of `low` to `high` distinct codes from `pool`."""
    return [orjson.dumps(rng.sample(pool, rng.randint(low, high))).decode() for _ in range(count)]


HOUSEHOLDS_SQL = """
INSERT INTO household (
    id, settlement_pcode, address, lat, lon, accuracy_m, head_name, phone,
    members, members_elderly, members_children, members_disabled, notes,
    decision, reasons, needs, planned_departure, last_outcome, last_visit_at,
    consent_to_share, review, version, field_stamps, created_by, created_at, updated_at,
    feed_txid, feed_seq)
SELECT
    gen_random_uuid(), ($1::text[])[s], 'вул. Синтетична, ' || (g % 400 + 1),
    49.71 + (r_lat - 0.5) * 0.12, 37.62 + (r_lon - 0.5) * 0.18, 3 + r_acc * 27,
    'Синтетична особа ' || g, '+38000' || lpad(g::text, 7, '0'),
    m, CASE WHEN m IS NULL THEN NULL ELSE least(m, floor(r_m * 3)::int) END,
    CASE WHEN m IS NULL THEN NULL ELSE least(m - 1, floor(r_m2 * 4)::int) END,
    CASE WHEN m IS NULL THEN NULL ELSE (r_m2 < 0.12)::int END,
    CASE WHEN r_note < 0.15 THEN 'Синтетична примітка: ключ у сусідів' ELSE '' END,
    decision,
    (CASE decision
        WHEN 'stay' THEN ($2::text[])[1 + floor(r_reason * array_length($2::text[], 1))::int]
        WHEN 'leave' THEN ($3::text[])[1 + floor(r_reason * array_length($3::text[], 1))::int]
        WHEN 'undecided' THEN ($4::text[])[1 + floor(r_reason * array_length($4::text[], 1))::int]
        ELSE '[]' END)::jsonb,
    (CASE WHEN decision IS NULL THEN '[]'
        ELSE ($5::text[])[1 + floor(r_need * array_length($5::text[], 1))::int] END)::jsonb,
    CASE WHEN decision = 'leave' AND r_need < 0.6
        THEN current_date + (1 + floor(r_acc * 30)::int) END,
    CASE WHEN decision IS NOT NULL THEN 'contacted'
        ELSE (ARRAY['not_home', 'refused', 'house_damaged'])[1 + floor(r_acc * 3)::int] END,
    last_visit_at,
    CASE WHEN decision IS NULL THEN NULL ELSE r_consent < 0.89 END,
    '{}'::jsonb, 1 + $7::int, '{}'::jsonb, ($6::uuid[])[s],
    last_visit_at - make_interval(days => 3 * $7::int), last_visit_at + interval '2 hours',
    0, 0
FROM (
    SELECT
        g,
        1 + floor(power(random(), 1.4) * array_length($1::text[], 1))::int AS s,
        CASE WHEN r < 0.10 THEN NULL WHEN r < 0.45 THEN 'stay' WHEN r < 0.75 THEN 'leave'
            ELSE 'undecided' END AS decision,
        CASE WHEN r < 0.10 THEN NULL ELSE 1 + floor(random() * 6)::int END AS m,
        now() - random() * interval '40 days' - interval '1 hour' AS last_visit_at,
        random() AS r_lat, random() AS r_lon, random() AS r_acc, random() AS r_m,
        random() AS r_m2, random() AS r_note, random() AS r_reason, random() AS r_need,
        random() AS r_consent
    FROM (SELECT g, random() AS r FROM generate_series(1, $8::int) AS g OFFSET 0) AS base
    OFFSET 0
) AS drawn
"""

#: Visits 1 .. n-1 of a household come every ~3 days before its last one; the last one
#: carries the household's folded state (a contacted visit for every household with a
#: decision), so the fold of the visits gives the household's row.
VISITS_SQL = """
INSERT INTO visit (
    id, household_id, device_id, recorded_by, batch_id, visited_at_device, visited_at,
    clock_corrected, future_clamped, outcome, decision, reasons, reason_note, leave_mode,
    signed_refusal, people_present, needs, planned_departure, destination, consent_to_share,
    lat, lon, accuracy_m, notes, corrects, content_hash, fold_state, review_state,
    review_note, received_at)
SELECT
    gen_random_uuid(), id, ($5::uuid[])[w], ($4::uuid[])[w], gen_random_uuid(),
    visited_at, visited_at, false, false, outcome, decision,
    (CASE WHEN is_last THEN reasons::text
        WHEN decision = 'stay' THEN ($1::text[])[1 + floor(r2 * array_length($1::text[], 1))::int]
        WHEN decision = 'leave' THEN ($2::text[])[1 + floor(r2 * array_length($2::text[], 1))::int]
        WHEN decision = 'undecided'
            THEN ($3::text[])[1 + floor(r2 * array_length($3::text[], 1))::int]
        ELSE '[]' END)::jsonb,
    CASE WHEN r3 < 0.05 AND outcome = 'contacted' THEN 'Синтетична примітка до причини'
        ELSE '' END,
    CASE WHEN decision = 'leave'
        THEN (ARRAY['organised_evacuation', 'own_means'])[1 + floor(r3 * 2)::int] END,
    CASE WHEN decision = 'stay' AND r3 < 0.3 THEN true END,
    CASE WHEN outcome = 'contacted' THEN 1 + floor(r2 * coalesce(members, 3))::int END,
    (CASE WHEN is_last THEN needs::text WHEN outcome = 'contacted' THEN '["information"]'
        ELSE '[]' END)::jsonb,
    CASE WHEN is_last THEN planned_departure END,
    CASE WHEN decision = 'leave' AND r3 < 0.5
        THEN (ARRAY['Харків', 'Дніпро', 'Київ', 'Полтава'])[1 + floor(r2 * 4)::int]
        ELSE '' END,
    CASE WHEN is_last THEN coalesce(consent_to_share, false)
        ELSE outcome = 'contacted' AND r3 < 0.8 END,
    lat + (r2 - 0.5) * 0.0002, lon + (r3 - 0.5) * 0.0002, 5 + r2 * 20, '', NULL,
    md5(id::text || k::text) || md5(k::text || id::text), 'folded',
    CASE WHEN r3 < 0.9 THEN 'unreviewed' WHEN r3 < 0.98 THEN 'approved' ELSE 'flagged' END,
    '', visited_at + random() * interval '6 hours'
FROM (
    SELECT
        id, settlement_pcode, reasons, needs, planned_departure, consent_to_share, members,
        lat, lon, k, k = $6::int AS is_last,
        CASE WHEN k = $6::int THEN last_visit_at
            ELSE last_visit_at - make_interval(days => 3 * ($6::int - k))
                + r1 * interval '1 day' END AS visited_at,
        CASE WHEN k = $6::int THEN last_outcome
            WHEN household_decision IS NULL OR r1 >= 0.55
                THEN (ARRAY['not_home', 'not_home', 'not_home', 'refused'])[1 + floor(r3 * 4)::int]
            ELSE 'contacted' END AS outcome,
        CASE WHEN k = $6::int THEN household_decision
            WHEN household_decision IS NULL OR r1 >= 0.55 THEN NULL
            ELSE (ARRAY['stay', 'leave', 'undecided'])[1 + floor(r1 / 0.55 * 3)::int] END
            AS decision,
        -- The settlement's own worker, now and then its neighbour's.
        1 + (array_position($7::text[], settlement_pcode) - 1 + (r2 < 0.2)::int)
            % array_length($7::text[], 1) AS w,
        r2, r3
    FROM (
        SELECT h.id, h.settlement_pcode, h.decision AS household_decision, h.reasons, h.needs,
            h.planned_departure, h.last_outcome, h.last_visit_at, h.consent_to_share,
            h.members, h.lat, h.lon, k, random() AS r1, random() AS r2, random() AS r3
        FROM household AS h CROSS JOIN generate_series(1, $6::int) AS k
        OFFSET 0
    ) AS h
    OFFSET 0
) AS drawn
"""


async def seed(dsn: str, households: int, per_household: int, rng: random.Random) -> list[str]:
    """The synthetic dataset; returns the settlements' P-codes."""
    rows = [
        row
        for row in parse_settlements_csv(BUNDLED_SETTLEMENTS.read_text(encoding="utf-8"))
        if row["hromada_pcode"] in HROMADAS
    ]
    rows.sort(key=lambda row: (HROMADAS.index(row["hromada_pcode"]), row["pcode"]))
    settlements = rows[:SETTLEMENTS]
    pcodes = [row["pcode"] for row in settlements]
    password_hash = hash_password(PASSWORD)
    workers = [uuid.uuid4() for _ in pcodes]  # one field worker a settlement
    devices = [uuid.uuid4() for _ in pcodes]  # with one phone each
    stay = sorted(codes.STAY_REASONS)
    leave = sorted(codes.LEAVE_REASONS)
    needs = sorted(codes.NEED_CODES - {codes.NO_NEEDS})
    connection = await asyncpg.connect(dsn)
    try:
        await connection.executemany(
            "INSERT INTO settlement (pcode, katottg, category, name_uk, name_en, hromada_pcode, "
            "hromada_uk, hromada_en, raion_pcode, oblast_pcode, evacuation_ordered, updated_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, now())",
            [
                (
                    row["pcode"], row["katottg"], row["category"], row["name_uk"],
                    row["name_en"], row["hromada_pcode"], row["hromada_uk"], row["hromada_en"],
                    row["raion_pcode"], row["oblast_pcode"], index % 3 != 2,
                )
                for index, row in enumerate(settlements)
            ],
        )  # fmt: skip
        await connection.executemany(
            "INSERT INTO user_account (id, username, full_name, role, password_hash, is_active, "
            "created_at, updated_at) VALUES ($1, $2, $3, $4, $5, true, now(), now())",
            [
                (uid, f"bench-export-field-{i:02d}", "Synthetic field worker", "field_worker",
                 password_hash)
                for i, uid in enumerate(workers)
            ]
            + [(uuid.uuid4(), SUPERVISOR, "Synthetic supervisor", "supervisor", password_hash)],
        )  # fmt: skip
        await connection.executemany(
            "INSERT INTO device (id, owner_id, label, first_seen_at) VALUES ($1, $2, $3, now())",
            [(d, u, "Synthetic phone") for d, u in zip(devices, workers, strict=True)],
        )
        await connection.executemany(
            "INSERT INTO settlement_assignment (user_id, settlement_pcode, assigned_at) "
            "VALUES ($1, $2, now())",
            list(zip(workers, pcodes, strict=True)),
        )
        stay_combos = _combos(rng, stay, 1, 3, 300)
        leave_combos = _combos(rng, leave, 1, 3, 200)
        undecided_combos = ["[]"] * 50 + _combos(rng, stay + leave, 1, 2, 100)
        need_combos = ['["none"]'] * 100 + _combos(rng, needs, 1, 3, 200)
        await connection.execute(
            HOUSEHOLDS_SQL, pcodes, stay_combos, leave_combos, undecided_combos, need_combos,
            workers, per_household, households,
        )  # fmt: skip
        await connection.execute(
            VISITS_SQL, stay_combos, leave_combos, undecided_combos, workers, devices,
            per_household, pcodes,
        )  # fmt: skip
        # As autovacuum would leave tables of this size: statistics, hint bits, visibility.
        await connection.execute("VACUUM ANALYZE household, visit")
    finally:
        await connection.close()
    return pcodes


# Reading a download ------------------------------------------------------------------------


@dataclass
class Download:
    """One export's bytes as they arrive: timed, decoded, counted and spooled to a file,
    which is read back with real parsers once the clock has stopped."""

    file_format: str
    started: float
    spool: IO[bytes]
    wire: int = 0
    size: int = 0
    first_byte: float | None = None
    first_row: float | None = None
    newlines: int = 0
    decoder: Any = None

    def feed_raw(self, raw: bytes, gzipped: bool) -> None:
        now = time.perf_counter()
        if self.first_byte is None and raw:
            self.first_byte = now - self.started
        self.wire += len(raw)
        if gzipped:
            if self.decoder is None:
                self.decoder = zlib.decompressobj(wbits=31)
            raw = self.decoder.decompress(raw)
        self._feed(raw, now)

    def finish(self, gzipped: bool) -> None:
        if gzipped and self.decoder is not None:
            self._feed(self.decoder.flush(), time.perf_counter())

    def _feed(self, data: bytes, now: float) -> None:
        if not data:
            return
        self.size += len(data)
        self.spool.write(data)
        if self.first_row is None and self._holds_a_row(data):
            self.first_row = now - self.started

    def _holds_a_row(self, data: bytes) -> bool:
        """Whether the first data row has arrived (the server sends whole rows)."""
        if self.file_format == "csv":
            self.newlines += data.count(b"\n")
            return self.newlines >= 3  # after the header and HXL rows
        if self.file_format == "jsonl":
            return b"\n" in data
        if self.file_format == "geojson":
            return b'"Feature"' in data
        return False  # XLSX: compressed, rows cannot be seen

    def problem(self, rows: int) -> str | None:
        """What is wrong with the file, given the row count the server announced; None if
        it parses as `rows` rows."""
        self.spool.seek(0)
        try:
            if self.file_format == "csv":
                return _csv_problem(self.spool, rows)
            if self.file_format == "jsonl":
                return _jsonl_problem(self.spool, rows)
            if self.file_format == "geojson":
                return _geojson_problem(self.spool, rows)
            return _xlsx_problem(self.spool, rows)
        except (
            ValueError,
            KeyError,
            IndexError,
            TypeError,
            zipfile.BadZipFile,
            csv.Error,
        ) as error:
            return f"unreadable {self.file_format}: {type(error).__name__}: {error}"


def _csv_problem(spool: IO[bytes], rows: int) -> str | None:
    text = io.TextIOWrapper(spool, encoding="utf-8", newline="")
    reader = csv.reader(text)
    header = next(reader)
    hxl = next(reader)
    if not all(tag.startswith("#") for tag in hxl if tag):
        return f"the second row is not HXL hashtags: {hxl[:3]}"
    found = 0
    for row in reader:
        found += 1
        if len(row) != len(header):
            return f"row {found} has {len(row)} fields, the header {len(header)}"
    text.detach()
    return None if found == rows else f"{found} CSV rows for {rows}"


def _jsonl_problem(spool: IO[bytes], rows: int) -> str | None:
    keys = None
    found = 0
    for line in spool:
        record = orjson.loads(line)
        keys = keys or record.keys()
        found += 1
        if record.keys() != keys:
            return f"line {found} has other keys than the first"
    return None if found == rows else f"{found} JSON lines for {rows}"


def _geojson_problem(spool: IO[bytes], rows: int) -> str | None:
    collection = orjson.loads(spool.read())
    if collection["type"] != "FeatureCollection":
        return f"a {collection['type']}, not a FeatureCollection"
    features = collection["features"]
    for feature in features:
        if feature["type"] != "Feature" or not isinstance(feature["properties"], dict):
            return f"not a Feature: {str(feature)[:200]}"
        if feature["geometry"] is not None:
            lon, lat = feature["geometry"]["coordinates"]
            if not (37 < lon < 38.5 and 49 < lat < 50.5):
                return f"a point at {lon}, {lat}, far from Kupiansk"
    return None if len(features) == rows else f"{len(features)} features for {rows} rows"


def _xlsx_problem(spool: IO[bytes], rows: int) -> str | None:
    with zipfile.ZipFile(spool) as workbook:
        names = workbook.namelist()
        for part in ("[Content_Types].xml", "xl/workbook.xml", "xl/styles.xml"):
            if part not in names:
                return f"no {part} in the workbook"
        sheets = [n for n in names if n.startswith("xl/worksheets/sheet")]
        found = 0
        for sheet in sheets:
            end = b""
            with workbook.open(sheet) as part_file:  # reading it checks its CRC
                while block := part_file.read(1 << 20):
                    found += (end[-4:] + block).count(b"<row>")  # 4: shorter than "<row>"
                    end = (end + block)[-24:]
            if end != b"</sheetData></worksheet>":
                return f"{sheet} does not end its sheet data"
        found -= 2 * len(sheets)  # header and HXL rows on every sheet
    return None if found == rows else f"{found} sheet rows for {rows} rows"


# Measuring one export ----------------------------------------------------------------------


@dataclass
class Result:
    rows: int
    first_byte: float
    first_row: float | None
    total: float
    wire: int
    size: int
    rss_before: int
    rss_peak: int
    cpu: float

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.total if self.total else 0.0

    @property
    def growth(self) -> int:
        return self.rss_peak - self.rss_before


async def sample_rss(group: int, peak: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], group_rss_bytes(group))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_SECONDS)


async def export_once(
    client: httpx.AsyncClient, token: str, group: int, kind: str, file_format: str, encoding: str
) -> Result:
    rss_before = group_rss_bytes(group)
    cpu_before = group_cpu_seconds(group)
    peak = [rss_before]
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_rss(group, peak, stop))
    with tempfile.TemporaryFile() as spool:
        download = Download(file_format, time.perf_counter(), spool)
        path, _, variant = kind.partition("+")
        params = {"format": file_format} | ({"protected": "true"} if variant else {})
        try:
            async with client.stream(
                "GET",
                f"/api/v1/exports/{path}",
                params=params,
                headers={"authorization": f"Bearer {token}", "accept-encoding": encoding},
            ) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise RuntimeError(
                        f"{kind} {file_format}: {response.status_code} {response.text}"
                    )
                gzipped = response.headers.get("content-encoding") == "gzip"
                async for raw in response.aiter_raw():
                    download.feed_raw(raw, gzipped)
                download.finish(gzipped)
                total = time.perf_counter() - download.started
                rows = int(response.headers["x-export-rows"])
        finally:
            stop.set()
            await sampler
        peak[0] = max(peak[0], group_rss_bytes(group))
        cpu = group_cpu_seconds(group) - cpu_before
        problem = download.problem(rows)
    if problem is not None:
        raise RuntimeError(f"{kind} {file_format}: the download is broken: {problem}")
    return Result(
        rows=rows,
        first_byte=download.first_byte if download.first_byte is not None else total,
        first_row=download.first_row,
        total=total,
        wire=download.wire,
        size=download.size,
        rss_before=rss_before,
        rss_peak=peak[0],
        cpu=cpu,
    )


#: What the statements of `database_alone` are built with: the server's defaults (the
#: key signs nothing there).
SETTINGS = Settings(env="development")


async def database_alone(url: str, kind: str) -> tuple[int, float]:
    """The rows and seconds of the COPY behind a CSV export, with no server: the same
    statement the server runs for the supervisor (sql_csv.py), in a REPEATABLE READ
    transaction, to an asyncpg client that throws the bytes away. What the database
    alone can write on this machine, against which the export is measured."""
    path, _, variant = kind.partition("+")
    protected = bool(variant)
    engine = create_async_engine(url)
    try:
        async with AsyncSession(engine) as session:
            await repository.begin_snapshot(session)
            query_of = repository.visits_query if path == "visits" else repository.households_query
            query = query_of(session, None, Filters(), consenting_only=protected)
            lines, _ = service.csv_lines_query(SETTINGS, path, query, protected)
            connection = await session.connection()
            sql = str(
                lines.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True})
            )
            driver = (await connection.get_raw_connection()).driver_connection
            assert driver is not None

            async def discard(chunk: bytes) -> None:
                pass

            started = time.perf_counter()
            status = await driver.copy_from_query(sql, output=discard, format="csv")
            return int(status.split()[-1]), time.perf_counter() - started
    finally:
        await engine.dispose()


async def sign_in_supervisor(client: httpx.AsyncClient) -> str:
    """A supervisor signs in from a desk: no device id."""
    response = await client.post(
        "/api/v1/auth/token", data={"username": SUPERVISOR, "password": PASSWORD}
    )
    response.raise_for_status()
    token: str = response.json()["access_token"]
    return token


# The run -----------------------------------------------------------------------------------


HEADER = (
    f"  {'export':<32}{'rows':>10}{'first byte':>12}{'first row':>11}{'total':>10}"
    f"{'CPU':>9}{'rows/s':>10}{'wire MB':>9}{'file MB':>9}{'RSS MB':>8}  growth MB (largest)"
)


def _row(label: str, runs: list[Result]) -> str:
    first_rows = [r.first_row for r in runs if r.first_row is not None]
    first_row = f"{median(first_rows):9.2f} s" if first_rows else f"{'-':>11}"
    return (
        f"  {label:<32}{runs[0].rows:>10,}{median([r.first_byte for r in runs]):10.2f} s"
        f"{first_row}{median([r.total for r in runs]):8.2f} s"
        f"{median([r.cpu for r in runs]):7.1f} s{median([r.rows_per_s for r in runs]):>10,.0f}"
        f"{median([r.wire for r in runs]) / MB:9.1f}{median([r.size for r in runs]) / MB:9.1f}"
        f"{median([r.rss_before for r in runs]) / MB:8.0f}"
        f"  {median([r.growth for r in runs]) / MB:+.0f} ({max(r.growth for r in runs) / MB:+.0f})"
    )


async def run(args: argparse.Namespace, url: str) -> int:
    visits = args.households * args.visits_per_household
    print("bench/export.py: exports")
    print(f"machine: {machine()}")
    started = time.perf_counter()
    pcodes = await seed(
        asyncpg_dsn(url), args.households, args.visits_per_household, random.Random(11)
    )
    seeding = time.perf_counter() - started
    print(
        f"data: synthetic, {args.households:,} households and {visits:,} visits "
        f"({args.visits_per_household} a household) in {len(pcodes)} settlements; "
        f"seeded in SQL in {seeding:.1f} s (with VACUUM ANALYZE)"
    )
    print(
        f"setup: {args.workers} server worker{'s' if args.workers > 1 else ''} on PostgreSQL, "
        f"one export at a time, client on the same machine; medians of {args.repeats} runs"
    )
    log_path = Path(tempfile.gettempdir()) / "fieldsync-bench-export-server.log"
    log_path.unlink(missing_ok=True)
    server = ServerProcess(url, workers=args.workers, log_path=log_path)
    results: dict[tuple[str, str, str], list[Result]] = {}
    failures: list[str] = []
    with server:
        group = server.pid or 0
        async with httpx.AsyncClient(base_url=server.base_url, timeout=600.0) as client:
            token = await sign_in_supervisor(client)
            signed_in = time.monotonic()
            # Warm-up: one small settlement in every format (imports, caches, connections).
            cases = [case for case in CASES if case[1] in args.formats]
            for kind, file_format, _ in cases:
                response = await client.get(
                    f"/api/v1/exports/{kind.partition('+')[0]}",
                    params={"format": file_format, "settlement": pcodes[-1]},
                    headers={"authorization": f"Bearer {token}"},
                )
                response.raise_for_status()
            print(f"server RSS after warm-up: {group_rss_bytes(group) / MB:.0f} MB")
            for kind, file_format, encoding in cases:
                runs = []
                for _ in range(args.repeats):
                    if time.monotonic() - signed_in > 600:  # access tokens last 15 minutes
                        token = await sign_in_supervisor(client)
                        signed_in = time.monotonic()
                    try:
                        runs.append(
                            await export_once(client, token, group, kind, file_format, encoding)
                        )
                    except RuntimeError as error:
                        failures.append(str(error))
                        break
                if runs:
                    results[(kind, file_format, encoding)] = runs

    alone: dict[str, float] = {}  # rows/s of the database alone, by kind
    if "csv" in args.formats:
        for kind in ("households", "households+protected", "visits"):
            copies = [await database_alone(url, kind) for _ in range(args.repeats)]
            alone[kind] = median([rows / seconds for rows, seconds in copies])

    print()
    print(HEADER)
    for (kind, file_format, encoding), runs in results.items():
        label = f"{kind} {file_format}" + (" plain" if encoding == "identity" else "")
        print(_row(label, runs))
    print(
        "  (gzip on the wire unless 'plain'; first row: the first data row decoded, '-' for "
        "XLSX; CPU: the server process's user + system time; RSS MB: the server before the "
        "export)"
    )
    for failure in failures:
        print(f"FAILED: {failure}")

    csv_rates = {
        f"{kind}{'' if encoding == 'gzip' else ' plain'}": median([r.rows_per_s for r in runs])
        for (kind, file_format, encoding), runs in results.items()
        if file_format == "csv" and kind != "settlements"
    }
    first_bytes = {
        f"{k} {f}{'' if e == 'gzip' else ' plain'}": median([r.first_byte for r in runs])
        for (k, f, e), runs in results.items()
    }
    growths = {
        f"{k} {f}{'' if e == 'gzip' else ' plain'}": max(r.growth for r in runs)
        for (k, f, e), runs in results.items()
    }
    if alone:
        print()
        print(
            "the database alone: the same COPY statements to a client that throws the bytes "
            "away (no server, no HTTP, no gzip; no row count first), medians in this run; "
            "'share' is the export's rows/s over it"
        )
        for kind, rate in alone.items():
            shares = ", ".join(
                f"{'gzip' if encoding == 'gzip' else 'plain'} {rate_of / rate:.2f}"
                for name, rate_of in csv_rates.items()
                for encoding in ["identity" if name.endswith(" plain") else "gzip"]
                if name.removesuffix(" plain") == kind
            )
            print(f"  {kind + ' csv':<32}{rate:>10,.0f} rows/s   share: {shares}")
    print()
    print("targets:")
    slowest_csv = min(csv_rates, key=lambda k: csv_rates[k]) if csv_rates else "-"
    csv_met = bool(csv_rates) and min(csv_rates.values()) >= TARGET_CSV_ROWS_PER_S
    print(
        f"  CSV rows/s >= {TARGET_CSV_ROWS_PER_S:,}:  "
        + ", ".join(f"{name} {rate:,.0f}" for name, rate in csv_rates.items())
        + f"   slowest {slowest_csv}: {'met' if csv_met else 'NOT met'}"
    )
    slowest_first = max(first_bytes, key=lambda k: first_bytes[k]) if first_bytes else "-"
    first_met = bool(first_bytes) and max(first_bytes.values()) < TARGET_FIRST_BYTE_S
    print(
        f"  first byte < {TARGET_FIRST_BYTE_S:.0f} s:  slowest {slowest_first} "
        f"{first_bytes.get(slowest_first, float('nan')):.2f} s: {'met' if first_met else 'NOT met'}"
    )
    largest = max(growths, key=lambda k: growths[k]) if growths else "-"
    rss_met = bool(growths) and max(growths.values()) < TARGET_RSS_GROWTH
    print(
        f"  RSS growth < {TARGET_RSS_GROWTH / MB:.0f} MB (largest of any run):  {largest} "
        f"{growths.get(largest, 0) / MB:+.0f} MB: {'met' if rss_met else 'NOT met'}"
    )
    print(f"server log: {log_path}")
    met = csv_met and first_met and rss_met and not failures
    print(f"targets met: {'yes' if met else 'NO'}")
    return 1 if failures else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--households", type=int, default=200_000)
    parser.add_argument("--visits-per-household", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--formats",
        default="csv,xlsx,geojson,jsonl",
        help="which formats to export (comma-separated); the targets judge what ran",
    )
    args = parser.parse_args()
    args.formats = set(args.formats.split(","))
    if not args.formats <= {"csv", "xlsx", "geojson", "jsonl"}:
        parser.error("--formats takes csv, xlsx, geojson and jsonl")
    if args.households < 1 or args.visits_per_household < 1:
        parser.error("--households and --visits-per-household must be at least 1")
    with migrated_postgres_database("fieldsync_bench") as url:
        code = asyncio.run(run(args, url))
    raise SystemExit(code)


if __name__ == "__main__":
    main()
