"""Pull: the change feed phones follow with an opaque cursor (docs/PROTOCOL.md, "Pull").

**Positions.** Every household, settlement and tombstone row carries its place in the
feed, `(feed_txid, feed_seq)`, stamped by a database trigger on every insert and update
(migration 0003), so no writer can forget it. On PostgreSQL `feed_txid` is the writing
transaction's id (`pg_current_xact_id()`) and `feed_seq` a number from a sequence; on
SQLite `feed_txid` is 0 and `feed_seq` comes from a counter row.

**Commit order.** A sequence number is taken when a row is written, not when its
transaction commits: a naive `seq > cursor` pull can read a higher number whose
transaction committed first, move its cursor past it, and never see a lower number that
commits later. So a pull on PostgreSQL only hands out rows whose transaction id is below
a horizon. It takes a snapshot, waits (up to 2 s) for the write transactions of this
database in flight in it (`pg_snapshot_xip`, leaving out those pg_stat_activity places
in another database of the cluster), and then uses the snapshot's xmax: every
transaction below it has ended and no new one can take such an id, so that part of the
feed is final, ordering by `(txid, seq)` inside it is never overtaken, and it holds every
change committed before the pull began. A cursor that has seen everything below the
horizon moves up to it. A write still open after the wait moves the horizon down to it:
its changes, and those of transactions that started writing after it, come on a later
pull; none is lost. SQLite runs one writer at a time, so its numbers are
committed in the order they are handed out: there the horizon is just past the last
number handed out when the pull starts.

**Tombstones** are sent only for households no longer in the stream's settlements (or
merged): transaction-id order is not commit order, so a move's tombstone can come after
the row of a later move back, and the row is the truth.

**Scope.** The cursor carries the settlements it was issued for. A settlement taken away
comes down as a settlement tombstone (drop it and its households). A settlement added is
caught up from the start in a second stream, up to where the main stream stands, and then
joins it. A supervisor with no assignment follows every settlement (`*`).

**Cursors** are signed (HMAC-SHA256 with a key derived from the server's secret), carry
the account they were issued to, and survive restarts. Tombstones older than the
retention are pruned; a cursor from before the prune mark is 410.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Select, delete, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import Role
from app.auth.service import Principal
from app.core.config import Settings
from app.core.db import one_of
from app.core.errors import BadRequest, FieldError, Gone
from app.households.models import Household
from app.settlements import service as settlements
from app.settlements.models import Settlement
from app.sync.models import FeedState, Tombstone
from app.visits.codes import SENSITIVE_REASONS

Key = tuple[int, int]
START: Key = (0, 0)
ALL = "*"

_household = Household.__table__  # type: ignore[attr-defined]
_h = _household.c
_s = Settlement.__table__.c  # type: ignore[attr-defined]
_t = Tombstone.__table__.c  # type: ignore[attr-defined]
_state = FeedState.__table__  # type: ignore[attr-defined]

#: What a phone holds of a household: its canonical state, not reviewers' notes or stamps.
HOUSEHOLD_COLUMNS = (
    "id", "settlement_pcode", "version", "address", "lat", "lon", "accuracy_m", "head_name",
    "phone", "members", "members_elderly", "members_children", "members_disabled", "notes",
    "decision", "reasons", "needs", "planned_departure", "last_outcome", "last_visit_at",
    "updated_at",
)  # fmt: skip
SETTLEMENT_COLUMNS = (
    "pcode", "name_uk", "name_en", "category", "hromada_pcode", "hromada_uk", "hromada_en",
    "raion_pcode", "oblast_pcode", "evacuation_ordered", "evacuation_ordered_on",
)  # fmt: skip


@dataclass
class Stream:
    """Where a cursor stands (`at`, the last feed key handed out) for some settlements
    (`pcodes`; None for all of them)."""

    at: Key
    pcodes: frozenset[str] | None


@dataclass
class Cursor:
    user_id: uuid.UUID
    main: Stream
    #: Settlements added since the main stream started, caught up to `main.at`.
    catchup: Stream | None = None
    #: Issued with `has_more`: the next page continues a pull already begun.
    more: bool = False

    def held(self) -> frozenset[str] | None:
        if self.main.pcodes is None:
            return None
        extra = self.catchup.pcodes if self.catchup and self.catchup.pcodes else frozenset()
        return self.main.pcodes | extra


# --- cursors ---------------------------------------------------------------------------


def _key(settings: Settings) -> bytes:
    return hmac.new(
        settings.secret_key.get_secret_value().encode(), b"fieldsync pull cursor v1", "sha256"
    ).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def _stream_doc(stream: Stream) -> dict[str, Any]:
    return {"at": list(stream.at), "p": ALL if stream.pcodes is None else sorted(stream.pcodes)}


def encode_cursor(settings: Settings, cursor: Cursor) -> str:
    document: dict[str, Any] = {"v": 1, "u": cursor.user_id.hex, "m": _stream_doc(cursor.main)}
    if cursor.catchup is not None:
        document["c"] = _stream_doc(cursor.catchup)
    if cursor.more:
        document["more"] = True
    payload = orjson.dumps(document)
    tag = hmac.new(_key(settings), payload, hashlib.sha256).digest()[:16]
    return f"{_b64(payload)}.{_b64(tag)}"


def _bad_cursor(problem: str) -> BadRequest:
    return BadRequest(
        "The cursor is not one this server issued to you. Keep the cursor exactly as "
        "the last pull returned it, or pull without a cursor to start again.",
        errors=[FieldError(field="cursor", code="invalid", message=problem)],
    )


def _read_stream(document: Any) -> Stream:
    at, pcodes = document["at"], document["p"]
    if not (isinstance(at, list) and len(at) == 2 and all(type(n) is int for n in at)):
        raise ValueError("position")
    if pcodes != ALL and not (isinstance(pcodes, list) and all(isinstance(p, str) for p in pcodes)):
        raise ValueError("settlements")
    return Stream((at[0], at[1]), None if pcodes == ALL else frozenset(pcodes))


def decode_cursor(settings: Settings, value: str, user_id: uuid.UUID) -> Cursor:
    """The cursor, checked: signed by this server, issued to this account, well formed."""
    try:
        payload_text, tag_text = value.split(".")
        payload, tag = _unb64(payload_text), _unb64(tag_text)
    except ValueError:
        raise _bad_cursor("is not in the form this server issues") from None
    expected = hmac.new(_key(settings), payload, hashlib.sha256).digest()[:16]
    if not hmac.compare_digest(tag, expected):
        raise _bad_cursor("has been altered or was signed by another server")
    try:
        document = orjson.loads(payload)
        if document["v"] != 1:
            raise ValueError("version")
        owner = uuid.UUID(hex=document["u"])
        main = _read_stream(document["m"])
        catchup = _read_stream(document["c"]) if "c" in document else None
        more = document.get("more", False)
        if type(more) is not bool:
            raise ValueError("more")
    except (ValueError, KeyError, TypeError):
        raise _bad_cursor("is signed but cannot be read") from None
    if owner != user_id:
        raise _bad_cursor("was issued to another account")
    return Cursor(owner, main, catchup, more)


# --- positions -------------------------------------------------------------------------


#: The transactions in flight that may write to this database, and the first id not yet
#: handed out. One in flight is left out only when pg_stat_activity shows it belongs to
#: another database of the cluster (an xid is matched on its low 32 bits, as backend_xid
#: has them): its rows can never be ours. One it cannot place (another role's session, a
#: prepared transaction) counts, which is safe: it can only delay a change.
_PG_SNAPSHOT = text(
    """
    SELECT
        ARRAY(
            SELECT x::text FROM pg_snapshot_xip(snap.s) AS x
            WHERE NOT EXISTS (
                SELECT 1 FROM pg_stat_activity AS a
                WHERE a.datid IS NOT NULL
                  AND a.datname IS DISTINCT FROM current_database()
                  AND a.backend_xid IS NOT NULL
                  AND a.backend_xid::text::bigint = x::text::bigint % 4294967296)
        ),
        pg_snapshot_xmax(snap.s)::text
    FROM (SELECT pg_current_snapshot() AS s) AS snap
    """
)
_PG_STILL_IN_FLIGHT = text(
    "SELECT x FROM unnest(CAST(:xids AS text[])) AS x "
    "WHERE pg_xact_status(CAST(x AS xid8)) = 'in progress'"
)
#: How long a pull waits for the writes in flight when it began. A push takes tens of
#: milliseconds; a longer transaction (an import, say) only delays its own changes and
#: the ones after it to a later pull.
WAIT_FOR_WRITERS_SECONDS = 2.0
_POLL_SECONDS = 0.005


async def horizon(session: AsyncSession, wait: float = WAIT_FOR_WRITERS_SECONDS) -> Key:
    """The feed key below which the feed is final and visible: no row with a smaller key
    can still be written or committed. Read before the rows.

    On PostgreSQL it first waits, up to `wait` seconds, for this database's write
    transactions in flight at the start: then every change committed before the pull
    began is below the horizon (guarantee 4)."""
    if session.get_bind().dialect.name != "postgresql":
        last = (await session.execute(select(_state.c.last_seq))).scalar_one()
        return (0, last + 1)
    in_flight_text, xmax = (await session.execute(_PG_SNAPSHOT)).one()
    in_flight = list(in_flight_text)
    deadline = time.monotonic() + wait
    while in_flight and time.monotonic() < deadline:
        await asyncio.sleep(_POLL_SECONDS)
        result = await session.execute(_PG_STILL_IN_FLIGHT, {"xids": in_flight})
        in_flight = list(result.scalars())
    # Every transaction below the snapshot's xmax has ended but those still in flight,
    # and every one that began since has a larger id.
    return (min((int(x) for x in in_flight), default=int(xmax)), 0)


async def pruned_through(session: AsyncSession) -> Key:
    row = (await session.execute(select(_state.c.pruned_txid, _state.c.pruned_seq))).one()
    return (row[0], row[1])


async def add_tombstones(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """File tombstones (household_id, settlement_pcode, reason, merged_into)."""
    if rows:
        await session.execute(Tombstone.__table__.insert(), list(rows))  # type: ignore[attr-defined]


async def prune_tombstones(session: AsyncSession, older_than: datetime) -> int:
    """Delete tombstones filed before `older_than`; cursors from before the newest one
    deleted get 410 from then on. Returns how many were deleted."""
    newest = (
        await session.execute(
            select(_t.feed_txid, _t.feed_seq)
            .where(_t.created_at < older_than)
            .order_by(_t.feed_txid.desc(), _t.feed_seq.desc())
            .limit(1)
        )
    ).first()
    if newest is None:
        return 0
    mark = (newest[0], newest[1])
    deleted = await session.execute(
        delete(Tombstone.__table__).where(  # type: ignore[attr-defined]
            tuple_(_t.feed_txid, _t.feed_seq) <= mark
        )
    )
    current = await pruned_through(session)
    if mark > current:
        await session.execute(update(_state).values(pruned_txid=mark[0], pruned_seq=mark[1]))
    return int(deleted.rowcount)  # type: ignore[attr-defined]


# --- the pull ----------------------------------------------------------------------------


@dataclass
class Page:
    households: list[dict[str, Any]] = field(default_factory=list)
    settlements: list[dict[str, Any]] = field(default_factory=list)
    tombstones: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Window:
    """Which part of the feed a read covers."""

    stream: Stream
    upto: Key | None
    #: Only keys below this (the horizon); None when `upto` already bounds the read.
    before: Key | None
    limit: int


def _within(
    session: AsyncSession, statement: Select[Any], columns: Any, scope_column: Any, w: _Window
) -> Select[Any]:
    key = tuple_(columns.feed_txid, columns.feed_seq)
    statement = statement.where(key > w.stream.at)
    upto, before, stream, limit = w.upto, w.before, w.stream, w.limit
    if upto is not None:
        statement = statement.where(key <= upto)
    if before is not None:
        statement = statement.where(key < before)
    if stream.pcodes is not None:
        statement = statement.where(one_of(session, scope_column, sorted(stream.pcodes)))
    return statement.order_by(columns.feed_txid, columns.feed_seq).limit(limit)


async def _read(
    session: AsyncSession,
    stream: Stream,
    *,
    upto: Key | None,
    before: Key | None,
    limit: int,
    with_tombstones: bool,
) -> list[tuple[Key, str, dict[str, Any]]]:
    """The first `limit` feed entries of the stream after its position, in feed order."""
    entries: list[tuple[Key, str, dict[str, Any]]] = []
    w = _Window(stream, upto, before, limit)
    households = _within(
        session,
        select(*(_h[n] for n in HOUSEHOLD_COLUMNS), _h.merged_into, _h.feed_txid, _h.feed_seq),
        _h, _h.settlement_pcode, w,
    )  # fmt: skip
    for row in (await session.execute(households)).mappings():
        entries.append(((row["feed_txid"], row["feed_seq"]), "household", dict(row)))
    places = _within(
        session,
        select(*(_s[n] for n in SETTLEMENT_COLUMNS), _s.feed_txid, _s.feed_seq),
        _s, _s.pcode, w,
    )  # fmt: skip
    for row in (await session.execute(places)).mappings():
        entries.append(((row["feed_txid"], row["feed_seq"]), "settlement", dict(row)))
    if with_tombstones:
        tombstones = _within(
            session,
            select(
                _t.household_id, _t.reason, _t.merged_into, _t.feed_txid, _t.feed_seq,
                _h.settlement_pcode.label("now_in"), _h.merged_into.label("now_merged_into"),
            ).outerjoin(_household, _h.id == _t.household_id),
            _t, _t.settlement_pcode, w,
        )  # fmt: skip
        for row in (await session.execute(tombstones)).mappings():
            # Feed order is transaction-id order, not commit order: a household can move
            # back into the stream's settlements in a transaction with a lower id than the
            # move's tombstone. Its row is the truth, so a tombstone for a household that
            # is now in the stream's settlements is not sent: the phone holds it, or gets
            # its row.
            now_in = row["now_in"]
            held = (
                now_in is not None
                and row["now_merged_into"] is None
                and (stream.pcodes is None or now_in in stream.pcodes)
            )
            kind = "obsolete" if held else "tombstone"
            entries.append(((row["feed_txid"], row["feed_seq"]), kind, dict(row)))
    entries.sort(key=lambda entry: entry[0])
    return entries[:limit]


def _household_out(row: dict[str, Any], role: Role) -> dict[str, Any]:
    out = {n: row[n] for n in HOUSEHOLD_COLUMNS if n not in ("lat", "lon", "accuracy_m")}
    out["id"] = str(row["id"])  # asyncpg's own UUID type is not one orjson writes
    out["settlement"] = out.pop("settlement_pcode")
    out["location"] = (
        {"lat": row["lat"], "lon": row["lon"], "accuracy_m": row["accuracy_m"]}
        if row["lat"] is not None and row["lon"] is not None
        else None
    )
    if role is not Role.supervisor:
        # Sensitive answers leave the server at household level only to supervisors.
        out["reasons"] = [r for r in row["reasons"] if r not in SENSITIVE_REASONS]
    return out


def _add(page: Page, entries: Sequence[tuple[Key, str, dict[str, Any]]], role: Role) -> None:
    for _, kind, row in entries:
        if kind == "obsolete":
            continue
        if kind == "settlement":
            page.settlements.append({n: row[n] for n in SETTLEMENT_COLUMNS})
        elif kind == "tombstone":
            page.tombstones.append(
                {
                    "kind": "household",
                    "id": str(row["household_id"]),
                    "reason": row["reason"],
                    "merged_into": row["merged_into"] and str(row["merged_into"]),
                }
            )
        elif row["merged_into"] is not None:  # merged away: its tombstone says where to
            continue
        else:
            page.households.append(_household_out(row, role))


async def _scope(session: AsyncSession, principal: Principal) -> frozenset[str] | None:
    assigned = frozenset(await settlements.assigned_pcodes(session, principal.user_id))
    if principal.role is Role.supervisor and not assigned:
        return None
    return assigned


async def _rescope(
    session: AsyncSession, cursor: Cursor, scope: frozenset[str] | None, page: Page
) -> None:
    """Bring the cursor to the caller's current settlements: tombstones for those taken
    away, a catch-up stream for those added."""
    held = cursor.held()
    if held == scope:
        return
    everything = frozenset(await settlements.all_pcodes(session))
    held_set = everything if held is None else held
    now_set = everything if scope is None else scope
    removed, added = held_set - now_set, now_set - held_set
    for pcode in sorted(removed):
        page.tombstones.append(
            {"kind": "settlement", "id": pcode, "reason": "unassigned", "merged_into": None}
        )
    main = everything if cursor.main.pcodes is None else cursor.main.pcodes
    cursor.main.pcodes = main - removed
    catchup = cursor.catchup.pcodes if cursor.catchup and cursor.catchup.pcodes else frozenset()
    catchup = (catchup - removed) | added
    if not catchup:
        cursor.catchup = None
    elif added or cursor.catchup is None:
        cursor.catchup = Stream(START, catchup)  # start again: it has new settlements
    else:
        cursor.catchup.pcodes = catchup


async def pull(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    cursor_text: str | None,
    limit: int,
) -> bytes:
    """One page of the caller's feed after its cursor, with the cursor for the next."""
    scope = await _scope(session, principal)
    if cursor_text is None:
        cursor = Cursor(principal.user_id, Stream(START, scope))
    else:
        cursor = decode_cursor(settings, cursor_text, principal.user_id)
        if cursor.main.at < await pruned_through(session):
            raise Gone(
                "This cursor is older than what the server still keeps. "
                "Pull again without a cursor to start from the beginning."
            )
    # A pull's first page waits for the writes in flight; its later pages need not: any
    # write in flight now began after the first page's snapshot.
    end = await horizon(session, wait=0.0 if cursor.more else WAIT_FOR_WRITERS_SECONDS)
    page = Page()
    await _rescope(session, cursor, scope, page)
    room = limit
    has_more = False
    if cursor.catchup is not None:
        # New settlements: nothing of them is on the phone, so no tombstones.
        entries = await _read(
            session, cursor.catchup, upto=cursor.main.at, before=None, limit=room + 1,
            with_tombstones=False,
        )  # fmt: skip
        if len(entries) > room:
            entries = entries[:room]
            cursor.catchup.at = entries[-1][0]
            has_more = True
        else:
            joined = (cursor.main.pcodes or frozenset()) | (cursor.catchup.pcodes or frozenset())
            cursor.main.pcodes = None if scope is None else joined
            cursor.catchup = None
        _add(page, entries, principal.role)
        room -= len(entries)
    if not has_more:
        entries = await _read(
            session, cursor.main, upto=None, before=end, limit=room + 1,
            with_tombstones=cursor.main.at != START,
        )  # fmt: skip
        if len(entries) > room:
            entries = entries[:room]
            has_more = True
        if entries:
            cursor.main.at = entries[-1][0]
        if not has_more:  # everything below the horizon is on the phone
            cursor.main.at = max(cursor.main.at, (end[0], end[1] - 1))
        _add(page, entries, principal.role)
    return orjson.dumps(
        {
            "households": page.households,
            "settlements": page.settlements,
            "tombstones": page.tombstones,
            "cursor": encode_cursor(settings, replace(cursor, more=has_more)),
            "has_more": has_more,
        },
        option=orjson.OPT_UTC_Z,
    )
