"""The batch journal (claim a batch id, find a claimed one, store the answer) and the
pull feed's queries (its horizon, its entries, pruning)."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import insert_ignoring_duplicates, one_of
from app.households.models import Household
from app.settlements.models import Settlement
from app.sync.cursor import Key, Stream
from app.sync.models import FeedState, SyncBatch, Tombstone

batch_table = SyncBatch.__table__  # type: ignore[attr-defined]
c = batch_table.c


async def claim(
    session: AsyncSession,
    *,
    batch_id: uuid.UUID,
    device_id: uuid.UUID,
    user_id: uuid.UUID,
    body_sha256: str,
    request_body: bytes,
    app_version: str,
    sent_at_device: datetime,
    clock_offset_seconds: float,
    item_count: int,
    received_at: datetime,
) -> bool:
    """Journal a batch id for this transaction. False if another transaction holds it.

    On PostgreSQL a concurrent claim of the same id waits here until the first
    transaction ends, so at most one of them processes the batch.
    """
    statement = insert_ignoring_duplicates(session, batch_table, "batch_id").returning(c.batch_id)
    result = await session.execute(
        statement,
        {
            "batch_id": batch_id,
            "device_id": device_id,
            "user_id": user_id,
            "body_sha256": body_sha256,
            "request_body": request_body,
            "response_body": b"",
            "app_version": app_version or None,
            "sent_at_device": sent_at_device,
            "clock_offset_seconds": clock_offset_seconds,
            "item_count": item_count,
            "received_at": received_at,
        },
    )
    return result.scalar_one_or_none() is not None


async def get(session: AsyncSession, batch_id: uuid.UUID) -> SyncBatch | None:
    result = await session.execute(select(SyncBatch).where(c.batch_id == batch_id))
    return result.scalar_one_or_none()


async def store_response(session: AsyncSession, batch_id: uuid.UUID, response: bytes) -> None:
    await session.execute(
        update(batch_table).where(c.batch_id == batch_id).values(response_body=response)
    )


# --- the pull feed ---------------------------------------------------------------------

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


async def feed_entries(
    session: AsyncSession,
    stream: Stream,
    *,
    upto: Key | None,
    before: Key | None,
    limit: int,
    with_tombstones: bool,
) -> list[tuple[Key, str, dict[str, Any]]]:
    """The first `limit` feed entries of the stream after its position, in feed order:
    (key, kind, row), kind being household, settlement, tombstone, or obsolete for a
    tombstone of a household now in the stream's settlements."""
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
_POLL_SECONDS = 0.005


async def horizon(session: AsyncSession, wait: float) -> Key:
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
