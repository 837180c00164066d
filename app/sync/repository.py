"""The batch journal: claim a batch id, find a claimed one, store the answer."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import insert_ignoring_duplicates
from app.sync.models import SyncBatch

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
