"""Prometheus metrics: defined once per process, counted once their transaction commits,
and rendered for `GET /metrics` summed over every worker process.

**One definition.** The metric objects live here, at module level, so they are registered
once however many apps a process creates (the tests create hundreds).

**Worker processes.** `fieldsync serve --workers N` (N > 1) points
`PROMETHEUS_MULTIPROC_DIR` at a fresh directory before the workers start: each worker
then writes its values to files there, and a scrape, whichever worker answers it, reads
and sums them all. prometheus-client picks that mode when it is imported, from the same
variable, so `MULTIPROCESS_DIR` is read then too. Without it (one process, the tests) the
values live in this process.

**After the commit.** The request owns the transaction (app/core/db.py): a batch counted
as stored must have been stored. Services call `count_after_commit`, which keeps the
increment on the session until its transaction commits and drops it if the transaction
rolls back.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Final

from prometheus_client import (
    REGISTRY,
    Counter,
    Histogram,
    Metric,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

MULTIPROCESS_DIR: Final = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
#: The Prometheus text format, version 0.0.4: every Prometheus version reads it.
CONTENT_TYPE: Final = CONTENT_TYPE_PLAIN_0_0_4

# No `_created` series next to every counter and histogram: Prometheus does not need them,
# and they would double what a scrape carries.
disable_created_metrics()  # type: ignore[no-untyped-call]

#: Seconds; up to two minutes, for exports streamed whole.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

REQUEST_SECONDS = Histogram(
    "fieldsync_http_request_duration_seconds",
    "Time from a request's arrival to the last byte of its response, by method, route "
    "template (never the raw path) and status class.",
    ["method", "route", "status"],
    buckets=LATENCY_BUCKETS,
)
PUSH_BATCHES = Counter(
    "fieldsync_push_batches",
    "Pushed batches by outcome: accepted (stored), replayed (a resend answered from the "
    "journal), conflict (a batch_id reused for another batch), refused (another 4xx of the "
    "push itself: invalid, too large, wrong device), retry (503, nothing stored).",
    ["outcome"],
)
PUSH_ITEMS = Counter(
    "fieldsync_push_items",
    "Items of accepted batches by kind (household, visit) and result status (applied, "
    "duplicate, conflict, pending, rejected).",
    ["kind", "status"],
)
CONFLICTS_OPENED = Counter(
    "fieldsync_conflicts_opened",
    "Conflicts opened for supervisors, by kind (decision_disagreement, stale_edit).",
    ["kind"],
)
PULL_PAGES = Counter("fieldsync_pull_pages", "Pull pages served.")
PULL_HOUSEHOLDS = Counter("fieldsync_pull_households", "Households sent in pull pages.")
PULL_TOMBSTONES = Counter(
    "fieldsync_pull_tombstones",
    "Tombstones sent in pull pages, by kind (household, settlement).",
    ["kind"],
)

# Every known label value is shown from the start, at 0: a series that appears only with
# its first event makes rate() and alerts miss that event.
for _outcome in ("accepted", "replayed", "conflict", "refused", "retry"):
    PUSH_BATCHES.labels(outcome=_outcome)
for _kind in ("household", "visit"):
    for _status in ("applied", "duplicate", "conflict", "pending", "rejected"):
        PUSH_ITEMS.labels(kind=_kind, status=_status)
for _kind in ("decision_disagreement", "stale_edit"):
    CONFLICTS_OPENED.labels(kind=_kind)
for _kind in ("household", "settlement"):
    PULL_TOMBSTONES.labels(kind=_kind)

_PENDING = "fieldsync.metrics.pending"

#: The push's route. A batch refused before the push's own code could count it, a 413 from
#: the body-size limit (app/core/body_limit.py) or a 503 from the database
#: (app/core/errors.py), is counted by whoever refused it, through `count_push_refused`.
PUSH_ROUTE: Final = "/api/v1/sync/push"


def count_push_refused(route: str, outcome: str) -> None:
    """Count a batch refused whole as `outcome` if `route` is the push's route."""
    if route == PUSH_ROUTE:
        PUSH_BATCHES.labels(outcome=outcome).inc()


def count_after_commit(session: AsyncSession, counter: Counter, amount: float = 1) -> None:
    """Add `amount` to `counter` once the session's transaction commits; never if it rolls
    back. Call it inside the transaction whose work it counts."""
    if amount <= 0:
        return
    sync_session = session.sync_session
    if not event.contains(sync_session, "after_commit", _count_committed):
        event.listen(sync_session, "after_commit", _count_committed)
        event.listen(sync_session, "after_transaction_end", _drop_uncommitted)
    sync_session.info.setdefault(_PENDING, []).append((counter, amount))


def _count_committed(session: Session) -> None:
    for counter, amount in session.info.pop(_PENDING, ()):
        counter.inc(amount)


def _drop_uncommitted(session: Session, transaction: SessionTransaction) -> None:
    """After a rollback (or a close without commit) nothing of the transaction counts.
    After a commit `_count_committed` has already taken the increments."""
    if transaction.parent is None:
        session.info.pop(_PENDING, None)


class _Scrape(Collector):
    """What one scrape shows: the counted metrics, plus values computed for this scrape."""

    def __init__(self, extra: Iterable[Metric]) -> None:
        self._source: Collector = REGISTRY
        if MULTIPROCESS_DIR:
            self._source = MultiProcessCollector(None)  # type: ignore[no-untyped-call]
        self._extra = list(extra)

    def collect(self) -> Iterator[Metric]:
        yield from self._source.collect()
        yield from self._extra


def exposition(extra: Iterable[Metric] = ()) -> bytes:
    """Every metric in the Prometheus text format (`CONTENT_TYPE`), summed over the worker
    processes in multiprocess mode, with `extra` metrics computed by the caller."""
    return generate_latest(_Scrape(extra))


def forget_this_process() -> None:
    """Multiprocess mode: a worker that exits drops its live gauges (counters and
    histograms stay: totals never go backwards)."""
    if MULTIPROCESS_DIR:
        mark_process_dead(os.getpid(), MULTIPROCESS_DIR)  # type: ignore[no-untyped-call]
