"""The sync batch journal: what each batch was and what the server answered."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Column, ForeignKey, LargeBinary
from sqlmodel import Field, SQLModel

from app.core.types import UTCDateTime, utcnow


class SyncBatch(SQLModel, table=True):
    """One pushed batch. A retry with the same body is answered from `response` byte for byte."""

    __tablename__ = "sync_batch"

    batch_id: uuid.UUID = Field(primary_key=True)
    device_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("device.id"), nullable=False, index=True)
    )
    user_id: uuid.UUID = Field(sa_column=Column(ForeignKey("user_account.id"), nullable=False))
    #: SHA-256 of the decompressed request body, to tell a retry from a reuse of the id.
    body_sha256: str = Field(max_length=64)
    request_body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    response_body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    app_version: str | None = Field(default=None, max_length=64)
    sent_at_device: datetime | None = Field(default=None, sa_type=UTCDateTime)
    clock_offset_seconds: float = 0.0
    item_count: int = 0
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
