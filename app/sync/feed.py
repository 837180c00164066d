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
a horizon. Its first page takes a snapshot and waits (`pull_wait_seconds`, 2 s) for the
write transactions of this database in flight in it (`pg_snapshot_xip`, leaving out
those pg_stat_activity places in another database of the cluster); the horizon is then
the snapshot's xmax. Every transaction below it has ended and no new one can take such
an id, so that part of the feed is final, ordering by `(txid, seq)` inside it is never
overtaken, and it holds every change committed before the pull began. A cursor that has
seen everything below the horizon moves up to it. A write still open after the wait
moves the horizon down to it: its changes, and those of transactions that started
writing after it, come on a later pull; none is lost. SQLite runs one writer at a time,
so its numbers are committed in the order they are handed out: there the horizon is just
past the last number handed out when the pull starts.

**Tombstones** are sent only for households no longer in the stream's settlements (or
merged): transaction-id order is not commit order, so a move's tombstone can come after
the row of a later move back, and the row is the truth.

**Scope.** The cursor carries the settlements it was issued for. A settlement taken away
comes down as a settlement tombstone (drop it and its households). A settlement added is
caught up from the start in a second stream, up to where the main stream stands, and then
joins it. A supervisor with no assignment follows every settlement (`*`).

**Cursors** (app/sync/cursor.py) are signed, carry the account and role they were issued
to, and survive restarts. Tombstones older than the retention are pruned; a cursor from
before the prune mark is 410, as is one from before a role change or one ahead of the
data (a restored backup).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import service as auth
from app.auth.models import Role
from app.auth.service import Principal
from app.core import metrics
from app.core.config import Settings
from app.core.errors import Gone
from app.core.types import utcnow
from app.settlements import service as settlements
from app.sync import cursor as cursors
from app.sync import repository
from app.sync.cursor import START, Cursor, Key, Stream
from app.sync.repository import HOUSEHOLD_COLUMNS, SETTLEMENT_COLUMNS
from app.visits.codes import SENSITIVE_REASONS


@dataclass
class Page:
    households: list[dict[str, Any]] = field(default_factory=list)
    settlements: list[dict[str, Any]] = field(default_factory=list)
    tombstones: list[dict[str, Any]] = field(default_factory=list)


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
    return await settlements.visible_pcodes(session, principal.user_id, principal.role)


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


def _gone(detail: str) -> Gone:
    return Gone(f"{detail} Pull again without a cursor to start from the beginning.")


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
        cursor = Cursor(principal.user_id, principal.role, Stream(START, scope))
    else:
        cursor = cursors.decode(settings, cursor_text, principal.user_id)
        if cursor.role is not principal.role:
            # What a phone may hold depends on the role (sensitive reasons, scope).
            raise _gone("Your role has changed since this cursor was issued.")
    started_at = cursor.main.at
    pruned = await repository.pruned_through(session)
    if cursor_text is not None and started_at < pruned:
        raise _gone("This cursor is older than what the server still keeps.")
    # A pull's first page waits for the writes in flight; its later pages need not: any
    # write in flight now began after the first page's snapshot.
    wait = 0.0 if cursor.more else settings.pull_wait_seconds
    end = await repository.horizon(session, wait=wait)
    if started_at >= end:
        raise _gone("This cursor is ahead of the server's data (restored from an older copy?).")
    page = Page()
    await _rescope(session, cursor, scope, page)
    room = limit
    has_more = False
    if cursor.catchup is not None:
        # New settlements: nothing of them is on the phone, so no tombstones.
        entries = await repository.feed_entries(
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
        entries = await repository.feed_entries(
            session, cursor.main, upto=None, before=end, limit=room + 1,
            with_tombstones=started_at != START,
        )  # fmt: skip
        if len(entries) > room:
            entries = entries[:room]
            has_more = True
        if entries:
            cursor.main.at = entries[-1][0]
        if not has_more:  # everything below the horizon is on the phone
            cursor.main.at = max(cursor.main.at, (end[0], end[1] - 1))
        _add(page, entries, principal.role)
    if started_at != START and started_at < await repository.pruned_through(session) != pruned:
        # Pruned while this page was read: tombstones it should have held may be gone.
        raise _gone("Old tombstones were pruned while this cursor was being served.")
    if principal.device_id is not None:
        await auth.record_seen(session, principal.device_id, utcnow())
    _count_page(session, page)
    return orjson.dumps(
        {
            "households": page.households,
            "settlements": page.settlements,
            "tombstones": page.tombstones,
            "cursor": cursors.encode(settings, replace(cursor, more=has_more)),
            "has_more": has_more,
        },
        option=orjson.OPT_UTC_Z,
    )


def _count_page(session: AsyncSession, page: Page) -> None:
    """The page and what it sends, counted once the request's transaction commits."""
    metrics.count_after_commit(session, metrics.PULL_PAGES)
    metrics.count_after_commit(session, metrics.PULL_HOUSEHOLDS, len(page.households))
    for kind in ("household", "settlement"):
        sent = sum(1 for t in page.tombstones if t["kind"] == kind)
        metrics.count_after_commit(session, metrics.PULL_TOMBSTONES.labels(kind=kind), sent)


async def prune_tombstones(session: AsyncSession, older_than: datetime) -> int:
    """Delete tombstones filed before `older_than`; cursors from before the newest one
    deleted get 410 from then on. Returns how many were deleted."""
    return await repository.prune_tombstones(session, older_than)
