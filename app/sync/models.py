"""The sync batch journal (what each batch was and what the server answered), and what
the pull feed keeps besides the rows themselves: tombstones and how far it was pruned."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Column, ForeignKey, Index, LargeBinary, String
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


class Tombstone(SQLModel, table=True):
    """A household phones must drop: merged into another, moved to another settlement, or
    deleted. Filed under the settlement the phones held it in."""

    __tablename__ = "tombstone"
    __table_args__ = (
        Index("ix_tombstone_feed", "feed_txid", "feed_seq"),
        Index("ix_tombstone_settlement_feed", "settlement_pcode", "feed_txid", "feed_seq"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    household_id: uuid.UUID
    settlement_pcode: str = Field(
        sa_column=Column(String(12), ForeignKey("settlement.pcode"), nullable=False)
    )
    #: merged, moved or deleted.
    reason: str = Field(max_length=16)
    merged_into: uuid.UUID | None = None
    created_at: datetime = Field(
        default_factory=utcnow, sa_type=UTCDateTime, nullable=False, index=True
    )
    feed_txid: int = Field(default=0, sa_type=BigInteger, nullable=False)
    feed_seq: int = Field(default=0, sa_type=BigInteger, nullable=False)


class FeedState(SQLModel, table=True):
    """One row: the feed position tombstones were pruned through (older cursors get 410),
    and on SQLite the last sequence number handed out."""

    __tablename__ = "feed_state"

    id: int = Field(default=1, primary_key=True)
    pruned_txid: int = Field(default=0, sa_type=BigInteger, nullable=False)
    pruned_seq: int = Field(default=0, sa_type=BigInteger, nullable=False)
    last_seq: int = Field(default=0, sa_type=BigInteger, nullable=False)
