"""A simulated phone: records visits offline and syncs them as the field app does.

It speaks the sync protocol of docs/PROTOCOL.md over HTTP (httpx) and knows nothing of
the server's code, so tests and benchmarks can drive real server processes with it::

    async with Device(server_url, "field-worker-1", password, link=Link(drop_after=0.2)) as phone:
        await phone.sign_in()        # a field worker's first sign-in registers the phone
        household = phone.record_household("UA6308013001", address="вул. Синтетична, 1")
        phone.record_visit(household, decision="stay", reasons=["attachment_to_home"])
        await phone.sync()           # push everything recorded, then pull until has_more is false
        phone.replica                # {household id: the household as last pulled}

What it does as a phone does:

- **Outbox.** What the worker records goes to a local SQLite outbox (a file, so it
  survives a restart of the phone, or memory), timed by the phone's own clock.
- **Stable batches.** Unsent items are formed into batches of at most `batch_size`
  items, households first. A batch, once formed, keeps its `batch_id` and its items,
  byte for byte, until the server answers it; only `sent_at` is renewed on each attempt
  ("device clock when this request was built"; the server's batch identity leaves it out,
  so a retry after a long wait does not skew the clock estimate).
- **Retries.** A network error, a 503 or a 429 is retried with exponential backoff and
  full jitter, never sooner than the server's `Retry-After`. A 401 renews the tokens
  (refresh, else a new sign-in) once; if that is refused too, `SignedOut` is raised.
- **Cursor.** The pull cursor is stored in the same SQLite transaction as the page it
  came with, so a page lost on the way, or a crash while applying it, is pulled again.
- **Replica.** Pulled households and settlements are kept locally; tombstones drop
  households (and re-point unsent visits to the survivor of a merge) and settlements
  (with their households). A 410 starts again from no cursor with an empty replica.
- **Wrong clock.** `clock_skew` puts the phone's clock off by that much; times are written
  with the phone's UTC offset (`utc_offset`, Kyiv winter time by default).
- **Flaky link** (`Link`): a request may be dropped before it is sent, its answer may be
  lost after the server answered, it may be sent twice at once, and pending batches may
  be sent in a shuffled order.

A household edit always names the household's settlement: an edit that overtakes the
batch that created its household (reordering) then still lands, instead of being
rejected as an unknown household. The simulator records no corrections (`corrects`).
`Stats` counts what happened on the link; `recorded()` and `batches()` give what the
phone recorded and what the server answered, for checking against the server's store.
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

API = "/api/v1"
#: Request kinds, for the statistics: sign-in and token refresh, push, pull.
AUTH, PUSH, PULL = "auth", "push", "pull"
RETRIED_STATUSES = frozenset({429, 503})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('household', 'visit')),
    item_id TEXT NOT NULL,
    household_id TEXT NOT NULL,
    body TEXT NOT NULL,
    batch_id TEXT REFERENCES batch (batch_id),
    result TEXT
);
CREATE TABLE IF NOT EXISTS batch (
    batch_id TEXT PRIMARY KEY,
    formed INTEGER NOT NULL,
    items TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    response TEXT
);
CREATE TABLE IF NOT EXISTS household (
    id TEXT PRIMARY KEY,
    settlement TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS settlement (pcode TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class DeviceError(RuntimeError):
    """The server answered something a phone cannot carry on from."""


class SignedOut(DeviceError):
    """The server refuses this phone's tokens and its sign-in (revoked, disabled)."""


class GaveUp(DeviceError):
    """A request kept failing for longer than `Backoff.give_up_after`."""


class LinkDropped(httpx.TransportError):
    """The simulated link lost a request or its answer."""


@dataclass(frozen=True)
class Link:
    """How flaky the phone's link is: each a probability per request, except `reorder`."""

    #: The request never reaches the server (a connection error).
    drop_before: float = 0.0
    #: The server answers, but the answer is lost (a read error once it was sent).
    drop_after: float = 0.0
    #: The request is sent twice at once (a retry racing the original).
    duplicate: float = 0.0
    #: Pending batches are sent in a shuffled order.
    reorder: bool = False


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: attempt n waits up to min(cap, base * 2**n)."""

    base: float = 0.5
    cap: float = 30.0
    #: Seconds of failing on one request before `GaveUp` is raised.
    give_up_after: float = 600.0

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None) -> float:
        jittered = rng.uniform(0, min(self.cap, self.base * 2**attempt))
        # Never before the server's Retry-After; the jitter on top spreads the phones that
        # were all told the same number.
        return jittered if retry_after is None else retry_after + jittered


@dataclass
class Stats:
    """What happened on the link, for reports and assertions."""

    #: Exchanges started by the phone (a duplicated send counts once here).
    requests: int = 0
    #: Requests sent again after a network error, a 503 or a 429.
    retries: int = 0
    network_errors: int = 0
    #: Network errors by httpx exception class: ConnectError (nothing was sent),
    #: RemoteProtocolError or ReadError (the connection broke while a request was out)...
    network_error_kinds: Counter[str] = field(default_factory=Counter)
    dropped_before: int = 0
    dropped_after: int = 0
    duplicated: int = 0
    #: Answers the server gave, by status code (each copy of a duplicated send counts).
    statuses: Counter[int] = field(default_factory=Counter)
    #: Seconds from sending to the whole answer read, of 200 answers, by request kind.
    latencies: dict[str, list[float]] = field(
        default_factory=lambda: {AUTH: [], PUSH: [], PULL: []}
    )
    #: (time.monotonic(), status) of every 5xx answer.
    server_errors: list[tuple[float, int]] = field(default_factory=list)
    #: Visits that left the phone (every copy, every attempt).
    visits_transmitted: int = 0
    #: Visits in pushes the server answered 200, whether or not the answer got back.
    visits_answered: int = 0


@dataclass(frozen=True)
class Recorded:
    """One item the worker recorded, with the server's answer once the phone has it."""

    kind: str  # "household" or "visit"
    item: dict[str, Any]
    batch_id: str | None
    #: The item's result from the answer (`ItemResult` of the protocol), or None.
    result: dict[str, Any] | None


@dataclass(frozen=True)
class SentBatch:
    batch_id: str
    #: `{"households": [...], "visits": [...]}` as sent, byte for byte.
    items: str
    attempts: int
    #: The 200 answer's body as received, or None while unanswered.
    response: str | None

    @property
    def answer(self) -> dict[str, Any] | None:
        return None if self.response is None else dict(json.loads(self.response))


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class FlakyTransport(httpx.AsyncBaseTransport):
    """An httpx transport that loses, duplicates and times requests as `Link` says."""

    def __init__(
        self, inner: httpx.AsyncBaseTransport, link: Link, rng: random.Random, stats: Stats
    ) -> None:
        self.inner = inner
        self.link = link
        self.rng = rng
        self.stats = stats

    async def _send(self, request: httpx.Request) -> httpx.Response:
        kind = str(request.extensions.get("fieldsync_kind", ""))
        visits = int(request.extensions.get("fieldsync_visits", 0))
        self.stats.visits_transmitted += visits
        started = time.monotonic()
        response = await self.inner.handle_async_request(request)
        await response.aread()
        status = response.status_code
        self.stats.statuses[status] += 1
        if status == 200:
            self.stats.visits_answered += visits
            if kind in self.stats.latencies:
                self.stats.latencies[kind].append(time.monotonic() - started)
        elif status >= 500:
            self.stats.server_errors.append((time.monotonic(), status))
        return response

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        link = self.link
        if link.drop_before and self.rng.random() < link.drop_before:
            self.stats.dropped_before += 1
            raise LinkDropped("the link dropped the request (simulated)", request=request)
        if link.duplicate and self.rng.random() < link.duplicate:
            self.stats.duplicated += 1
            twin = httpx.Request(
                request.method,
                request.url,
                headers=request.headers,
                content=request.content,
                extensions=request.extensions,
            )
            first, second = await asyncio.gather(
                self._send(request), self._send(twin), return_exceptions=True
            )
            if isinstance(second, httpx.Response):
                await second.aclose()
            if isinstance(first, BaseException):
                raise first
            response = first
        else:
            response = await self._send(request)
        if link.drop_after and self.rng.random() < link.drop_after:
            self.stats.dropped_after += 1
            await response.aclose()
            raise LinkDropped("the link lost the answer (simulated)", request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


class Device:
    """A field worker's phone. See the module docstring."""

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        *,
        device_id: uuid.UUID | None = None,
        store: str | Path = ":memory:",
        clock_skew: timedelta = timedelta(0),
        utc_offset: timedelta = timedelta(hours=2),
        link: Link | None = None,
        backoff: Backoff | None = None,
        seed: int | None = None,
        batch_size: int = 100,
        pull_limit: int = 500,
        app_version: str = "simulator-1.0",
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url
        self.username = username
        self.password = password
        self.clock_skew = clock_skew
        self.utc_offset = utc_offset
        self.link = link or Link()
        self.backoff = backoff or Backoff()
        self.rng = random.Random(seed)
        self.batch_size = batch_size
        self.pull_limit = pull_limit
        self.app_version = app_version
        self.stats = Stats()
        self._db = sqlite3.connect(str(store), isolation_level=None)
        self._db.executescript(_SCHEMA)
        stored_id = self._get_state("device_id")
        if stored_id is None:
            stored_id = str(device_id or uuid.UUID(int=self.rng.getrandbits(128), version=4))
            self._set_state("device_id", stored_id)
        self.device_id = uuid.UUID(stored_id)
        self._last_time = datetime.min.replace(tzinfo=UTC)
        inner = transport or httpx.AsyncHTTPTransport(
            # A new connection per request, as on a phone whose link comes and goes.
            limits=httpx.Limits(max_keepalive_connections=0)
        )
        self._http = httpx.AsyncClient(
            base_url=base_url,
            transport=FlakyTransport(inner, self.link, self.rng, self.stats),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
        )

    # --- Lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Device:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()
        self._db.close()

    # --- Local storage --------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _get_state(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set_state(self, key: str, value: str | None) -> None:
        if value is None:
            self._db.execute("DELETE FROM state WHERE key = ?", (key,))
        else:
            self._db.execute(
                "INSERT INTO state (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    @property
    def refresh_token(self) -> str | None:
        return self._get_state("refresh_token")

    @property
    def cursor(self) -> str | None:
        return self._get_state("cursor")

    @property
    def replica(self) -> dict[str, dict[str, Any]]:
        """The households as last pulled, by id."""
        rows = self._db.execute("SELECT id, body FROM household ORDER BY id")
        return {str(hid): dict(json.loads(body)) for hid, body in rows}

    @property
    def settlements(self) -> dict[str, dict[str, Any]]:
        """The settlements as last pulled (those assigned to the worker), by P-code."""
        rows = self._db.execute("SELECT pcode, body FROM settlement ORDER BY pcode")
        return {str(pcode): dict(json.loads(body)) for pcode, body in rows}

    def pending(self) -> int:
        """Items the server has not answered yet."""
        row = self._db.execute("SELECT count(*) FROM outbox WHERE result IS NULL").fetchone()
        return int(row[0])

    def recorded(self) -> list[Recorded]:
        rows = self._db.execute("SELECT kind, body, batch_id, result FROM outbox ORDER BY seq")
        return [
            Recorded(str(kind), dict(json.loads(body)), batch_id, result and json.loads(result))
            for kind, body, batch_id, result in rows
        ]

    def batches(self) -> list[SentBatch]:
        rows = self._db.execute(
            "SELECT batch_id, items, attempts, response FROM batch ORDER BY formed"
        )
        return [SentBatch(str(b), str(i), int(a), r) for b, i, a, r in rows]

    # --- The phone's clock ----------------------------------------------------------------

    def now(self) -> datetime:
        """The phone's clock: wrong by `clock_skew`, never the same instant twice."""
        at = datetime.now(UTC) + self.clock_skew
        if at <= self._last_time:
            at = self._last_time + timedelta(microseconds=1)
        self._last_time = at
        return at

    def _stamp(self, at: datetime | None = None) -> str:
        """A time as the phone writes it: RFC 3339 with the phone's UTC offset."""
        return (at or self.now()).astimezone(timezone(self.utc_offset)).isoformat()

    # --- Recording ------------------------------------------------------------------------

    def _add(self, kind: str, item_id: str, household_id: str, item: dict[str, Any]) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO outbox (kind, item_id, household_id, body) VALUES (?, ?, ?, ?)",
                (kind, item_id, household_id, _dumps(item)),
            )

    def _new_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def record_household(
        self, settlement: str, *, household_id: str | None = None, **fields: Any
    ) -> str:
        """A new household (profile fields as in the protocol); returns its id."""
        hid = household_id or self._new_id()
        item = {"id": hid, "settlement": settlement, **fields}
        item["observed_at"] = self._stamp()
        item["base_version"] = None
        self._add("household", hid, hid, item)
        return hid

    def edit_household(self, household_id: str, **fields: Any) -> None:
        """Change some profile fields of a household, as last seen on this phone."""
        known = self.replica.get(household_id)
        settlement = fields.pop("settlement", None) or self._settlement_of(household_id)
        if settlement is None:
            raise ValueError(f"household {household_id} is not known to this phone")
        item = {"id": household_id, "settlement": settlement, **fields}
        item["observed_at"] = self._stamp()
        item["base_version"] = None if known is None else known["version"]
        self._add("household", household_id, household_id, item)

    def _settlement_of(self, household_id: str) -> str | None:
        row = self._db.execute(
            "SELECT settlement FROM household WHERE id = ?", (household_id,)
        ).fetchone()
        if row is not None:
            return str(row[0])
        row = self._db.execute(
            "SELECT body FROM outbox WHERE kind = 'household' AND item_id = ? "
            "ORDER BY seq DESC LIMIT 1",
            (household_id,),
        ).fetchone()
        return None if row is None else str(json.loads(row[0])["settlement"])

    def record_visit(
        self,
        household_id: str,
        *,
        outcome: str = "contacted",
        decision: str | None = None,
        visited_at: datetime | None = None,
        **fields: Any,
    ) -> str:
        """A visit at the household's door, timed by the phone's clock; returns its id."""
        vid = self._new_id()
        item: dict[str, Any] = {
            "id": vid,
            "household_id": household_id,
            "visited_at": self._stamp(visited_at),
            "outcome": outcome,
            "decision": decision,
            "reasons": [],
            "needs": [],
            "consent_to_share": False,
        }
        item.update(fields)
        self._add("visit", vid, household_id, item)
        return vid

    # --- Talking to the server ------------------------------------------------------------

    def auth_headers(self) -> dict[str, str]:
        """The Authorization header with the phone's current access token."""
        token = self._get_state("access_token")
        return {} if token is None else {"Authorization": f"Bearer {token}"}

    async def _request(
        self,
        kind: str,
        method: str,
        path: str,
        *,
        build: Callable[[], bytes] | None = None,
        params: dict[str, Any] | None = None,
        data: dict[str, str] | None = None,
        visits: int = 0,
        authenticated: bool = True,
    ) -> httpx.Response:
        """Send until the server gives an answer other than 503 or 429 (retrying network
        errors too, with backoff); a 401 renews the tokens once."""
        started = time.monotonic()
        attempt = 0
        renewed = False
        while True:
            self.stats.requests += 1
            headers = self.auth_headers() if authenticated else {}
            if build is not None:
                headers["Content-Type"] = "application/json"
            retry_after: float | None = None
            try:
                response = await self._http.request(
                    method,
                    path,
                    content=build() if build is not None else None,
                    params=params,
                    data=data,
                    headers=headers,
                    extensions={"fieldsync_kind": kind, "fieldsync_visits": visits},
                )
            except httpx.TransportError as exc:
                self.stats.network_errors += 1
                self.stats.network_error_kinds[type(exc).__name__] += 1
            else:
                if response.status_code == 401 and authenticated and not renewed:
                    renewed = True
                    await self._renew_tokens()
                    continue
                if response.status_code not in RETRIED_STATUSES:
                    return response
                retry_after = _retry_after(response)
            if time.monotonic() - started > self.backoff.give_up_after:
                raise GaveUp(f"{method} {path} kept failing for {self.backoff.give_up_after} s")
            await asyncio.sleep(self.backoff.delay(attempt, self.rng, retry_after))
            attempt += 1
            self.stats.retries += 1

    async def sign_in(self) -> None:
        """Password sign-in with the device id as `client_id` (registers the phone)."""
        response = await self._request(
            AUTH,
            "POST",
            f"{API}/auth/token",
            data={
                "username": self.username,
                "password": self.password,
                "client_id": str(self.device_id),
                "grant_type": "password",
            },
            authenticated=False,
        )
        if response.status_code == 401:
            raise SignedOut(f"sign-in refused: {response.text}")
        self._keep_tokens(response)

    async def _renew_tokens(self) -> None:
        """Refresh the tokens; if the refresh token is refused (rotated by an answer that
        was lost, or revoked), sign in again with the password."""
        refresh_token = self._get_state("refresh_token")
        if refresh_token is not None:
            response = await self._request(
                AUTH,
                "POST",
                f"{API}/auth/refresh",
                build=lambda: _dumps({"refresh_token": refresh_token}).encode(),
                authenticated=False,
            )
            if response.status_code == 200:
                self._keep_tokens(response)
                return
            if response.status_code != 401:
                raise DeviceError(f"refresh: {response.status_code} {response.text}")
        await self.sign_in()

    def _keep_tokens(self, response: httpx.Response) -> None:
        if response.status_code != 200:
            raise DeviceError(f"sign-in: {response.status_code} {response.text}")
        tokens = response.json()
        with self._transaction():
            self._set_state("access_token", tokens["access_token"])
            self._set_state("refresh_token", tokens["refresh_token"])

    # --- Push -----------------------------------------------------------------------------

    def _form_batches(self) -> None:
        """Put every item not yet in a batch into batches (households first), for good."""
        with self._transaction() as db:
            rows = db.execute(
                "SELECT seq, kind, body FROM outbox WHERE batch_id IS NULL "
                "ORDER BY kind = 'visit', seq"
            ).fetchall()
            formed = int(db.execute("SELECT count(*) FROM batch").fetchone()[0])
            for start in range(0, len(rows), self.batch_size):
                chunk = rows[start : start + self.batch_size]
                households = ",".join(body for _, kind, body in chunk if kind == "household")
                visits = ",".join(body for _, kind, body in chunk if kind == "visit")
                items = f'{{"households":[{households}],"visits":[{visits}]}}'
                batch_id = self._new_id()
                db.execute(
                    "INSERT INTO batch (batch_id, formed, items) VALUES (?, ?, ?)",
                    (batch_id, formed, items),
                )
                formed += 1
                db.executemany(
                    "UPDATE outbox SET batch_id = ? WHERE seq = ?",
                    [(batch_id, seq) for seq, _, _ in chunk],
                )

    async def push(self) -> int:
        """Send every unanswered batch (forming new ones first) until each is answered;
        returns how many batches were answered."""
        self._form_batches()
        pending = [b for b in self.batches() if b.response is None]
        if self.link.reorder:
            self.rng.shuffle(pending)
        for batch in pending:
            await self._push_batch(batch)
        return len(pending)

    async def _push_batch(self, batch: SentBatch) -> None:
        head = f'{{"batch_id":"{batch.batch_id}","device_id":"{self.device_id}","sent_at":'
        version = _dumps(self.app_version)

        def build() -> bytes:
            with self._transaction() as db:
                db.execute(
                    "UPDATE batch SET attempts = attempts + 1 WHERE batch_id = ?",
                    (batch.batch_id,),
                )
            envelope = f'{head}"{self._stamp()}","app_version":{version},'
            return (envelope + batch.items[1:]).encode()

        visits = len(json.loads(batch.items)["visits"])
        response = await self._request(PUSH, "POST", f"{API}/sync/push", build=build, visits=visits)
        if response.status_code == 401:
            raise SignedOut(f"push refused: {response.text}")
        if response.status_code != 200:
            raise DeviceError(
                f"push of batch {batch.batch_id}: {response.status_code} {response.text}"
            )
        self._apply_answer(batch, response.text)

    def _apply_answer(self, batch: SentBatch, text: str) -> None:
        answer = json.loads(text)
        items = json.loads(batch.items)
        sent = [("household", h["id"]) for h in items["households"]] + [
            ("visit", v["id"]) for v in items["visits"]
        ]
        results = answer.get("results", [])
        got = [(r["kind"], r["id"]) for r in results]
        if answer.get("batch_id") != batch.batch_id or got != sent:
            raise DeviceError(f"the answer to batch {batch.batch_id} does not match it: {text}")
        with self._transaction() as db:
            db.execute("UPDATE batch SET response = ? WHERE batch_id = ?", (text, batch.batch_id))
            seqs = [
                row[0]
                for row in db.execute(
                    "SELECT seq FROM outbox WHERE batch_id = ? ORDER BY kind = 'visit', seq",
                    (batch.batch_id,),
                )
            ]
            db.executemany(
                "UPDATE outbox SET result = ? WHERE seq = ?",
                [(_dumps(r), seq) for r, seq in zip(results, seqs, strict=True)],
            )

    # --- Pull -----------------------------------------------------------------------------

    async def pull(self) -> int:
        """Pull from the stored cursor until `has_more` is false; returns the pages."""
        pages = 0
        while True:
            cursor = self.cursor
            params: dict[str, Any] = {"limit": self.pull_limit}
            if cursor is not None:
                params["cursor"] = cursor
            response = await self._request(PULL, "GET", f"{API}/sync/pull", params=params)
            if response.status_code == 410:
                self._forget_replica()
                continue
            if response.status_code == 401:
                raise SignedOut(f"pull refused: {response.text}")
            if response.status_code != 200:
                raise DeviceError(f"pull: {response.status_code} {response.text}")
            page = response.json()
            self._apply_page(page)
            pages += 1
            if not page["has_more"]:
                return pages

    def _forget_replica(self) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM household")
            db.execute("DELETE FROM settlement")
            self._set_state("cursor", None)

    def _apply_page(self, page: dict[str, Any]) -> None:
        """Apply one page and keep its cursor, in one local transaction."""
        with self._transaction() as db:
            for settlement in page["settlements"]:
                db.execute(
                    "INSERT INTO settlement (pcode, body) VALUES (?, ?) "
                    "ON CONFLICT (pcode) DO UPDATE SET body = excluded.body",
                    (settlement["pcode"], _dumps(settlement)),
                )
            for tombstone in page["tombstones"]:
                if tombstone["kind"] == "settlement":
                    db.execute("DELETE FROM household WHERE settlement = ?", (tombstone["id"],))
                    db.execute("DELETE FROM settlement WHERE pcode = ?", (tombstone["id"],))
                    continue
                db.execute("DELETE FROM household WHERE id = ?", (tombstone["id"],))
                if tombstone.get("merged_into"):
                    self._repoint(db, tombstone["id"], tombstone["merged_into"])
            for household in page["households"]:
                db.execute(
                    "INSERT INTO household (id, settlement, body) VALUES (?, ?, ?) "
                    "ON CONFLICT (id) DO UPDATE SET settlement = excluded.settlement, "
                    "body = excluded.body",
                    (household["id"], household["settlement"], _dumps(household)),
                )
            self._set_state("cursor", page["cursor"])

    @staticmethod
    def _repoint(db: sqlite3.Connection, merged: str, survivor: str) -> None:
        """Unsent visits of a merged-away household now name the survivor."""
        rows = db.execute(
            "SELECT seq, body FROM outbox WHERE kind = 'visit' AND household_id = ? "
            "AND batch_id IS NULL",
            (merged,),
        ).fetchall()
        for seq, body in rows:
            item = json.loads(body)
            item["household_id"] = survivor
            db.execute(
                "UPDATE outbox SET household_id = ?, body = ? WHERE seq = ?",
                (survivor, _dumps(item), seq),
            )

    # --- Both -----------------------------------------------------------------------------

    async def sync(self) -> None:
        """Push everything recorded, then pull until the server has nothing more."""
        await self.push()
        await self.pull()
