"""Readiness: is the database reachable, and migrated to the code's head revision?"""

from __future__ import annotations

import asyncio

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.migrations import current_revision, head_revision
from app.ops.schemas import Readiness

READINESS_TIMEOUT_SECONDS = 5.0


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
