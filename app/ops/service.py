"""Readiness (is the database reachable, and migrated to the code's head revision?) and
the metrics page: who may read it, and what is counted when it is read."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging

from prometheus_client.core import GaugeMetricFamily
from pydantic import SecretStr
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.core import metrics
from app.core.errors import Forbidden, NotAuthenticated
from app.core.migrations import current_revision, head_revision
from app.ops.schemas import Readiness
from app.visits import service as visits

READINESS_TIMEOUT_SECONDS = 5.0
#: A scrape does not wait longer than this for the database; the page then goes without
#: the counts the database gives.
METRICS_QUERY_TIMEOUT_SECONDS = 2.0

logger = logging.getLogger("fieldsync.ops")


async def readiness(engine: AsyncEngine) -> Readiness:
    expected = head_revision()
    try:
        async with asyncio.timeout(READINESS_TIMEOUT_SECONDS), engine.connect() as connection:
            revision = await current_revision(connection)
    except (DBAPIError, OSError, TimeoutError):
        return Readiness(
            status="unavailable",
            database="unreachable",
            migration=None,
            expected_migration=expected,
        )
    return Readiness(
        status="ready" if revision == expected else "not_migrated",
        database="reachable",
        migration=revision,
        expected_migration=expected,
    )


def _is_loopback(host: str | None) -> bool:
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return False  # a unix socket or a name: not known to be this machine
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def check_metrics_access(
    token: SecretStr | None, client_host: str | None, authorization: str | None
) -> None:
    """With FIELDSYNC_METRICS_TOKEN set, every caller must send it as a bearer token (a
    reverse proxy on this machine would otherwise make everyone look local); without it,
    only callers on this machine may read the metrics."""
    if token is None:
        if not _is_loopback(client_host):
            raise Forbidden(
                "Metrics are served to this machine only. To scrape from elsewhere, set "
                "FIELDSYNC_METRICS_TOKEN and send it as a bearer token."
            )
        return
    scheme, _, credentials = (authorization or "").partition(" ")
    expected = token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        credentials.strip().encode(), expected
    ):
        raise NotAuthenticated("Metrics need the bearer token set in FIELDSYNC_METRICS_TOKEN.")


async def _pending_visits(sessionmaker: async_sessionmaker[AsyncSession]) -> int | None:
    try:
        async with asyncio.timeout(METRICS_QUERY_TIMEOUT_SECONDS), sessionmaker() as session:
            return await visits.count_pending(session)
    except (DBAPIError, OSError, TimeoutError) as exc:
        logger.warning("metrics: pending visits not counted: %s", type(exc).__name__)
        return None


async def metrics_page(sessionmaker: async_sessionmaker[AsyncSession]) -> bytes:
    """Every metric in the Prometheus text format, with the pending visits counted now.
    When the database does not answer, the page still comes, without that count: an
    outage is when the request counts matter most."""
    extra = []
    pending = await _pending_visits(sessionmaker)
    if pending is not None:
        extra.append(
            GaugeMetricFamily(
                "fieldsync_pending_visits",
                "Visits stored while their household has not arrived yet, counted at scrape.",
                value=pending,
            )
        )
    # Reading every worker's files is file I/O: off the event loop.
    return await asyncio.to_thread(metrics.exposition, extra)
