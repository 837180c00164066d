"""The canonical household: profile fields plus the state folded from visits."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import BigInteger, Column, ForeignKey, Index, String, Text
from sqlmodel import Field, SQLModel

from app.core.types import JSONDocument, UTCDateTime, utcnow


class Household(SQLModel, table=True):
    """One household in its current canonical state. `version` grows on every change."""

    __tablename__ = "household"
    __table_args__ = (
        Index("ix_household_feed", "feed_txid", "feed_seq"),
        Index("ix_household_settlement_feed", "settlement_pcode", "feed_txid", "feed_seq"),
    )

    id: uuid.UUID = Field(primary_key=True)
    settlement_pcode: str = Field(
        sa_column=Column(String(12), ForeignKey("settlement.pcode"), nullable=False, index=True)
    )
    # Profile, editable from the phone.
    address: str = Field(default="", max_length=500)
    lat: float | None = None
    lon: float | None = None
    accuracy_m: float | None = None
    head_name: str = Field(default="", max_length=200)
    phone: str = Field(default="", max_length=40)
    members: int | None = None
    members_elderly: int | None = None
    members_children: int | None = None
    members_disabled: int | None = None
    notes: str = Field(default="", sa_type=Text)
    # State folded from visits.
    decision: str | None = Field(default=None, max_length=16)
    reasons: list[str] = Field(default_factory=list, sa_type=JSONDocument, nullable=False)
    needs: list[str] = Field(default_factory=list, sa_type=JSONDocument, nullable=False)
    planned_departure: date | None = None
    last_outcome: str | None = Field(default=None, max_length=24)
    last_visit_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    consent_to_share: bool | None = None
    review: dict[str, Any] = Field(default_factory=dict, sa_type=JSONDocument, nullable=False)
    version: int = 1
    #: For each folded field, which observation set it and at which version (see fold.py).
    field_stamps: dict[str, Any] = Field(default_factory=dict, sa_type=JSONDocument, nullable=False)
    merged_into: uuid.UUID | None = Field(
        default=None, sa_column=Column(ForeignKey("household.id"), nullable=True)
    )
    created_by: uuid.UUID | None = Field(
        default=None, sa_column=Column(ForeignKey("user_account.id"), nullable=True)
    )
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    #: The row's place in the pull feed, set by a database trigger on every write
    #: (app/sync/feed.py): the writing transaction's id, then a sequence number.
    feed_txid: int = Field(default=0, sa_type=BigInteger, nullable=False)
    feed_seq: int = Field(default=0, sa_type=BigInteger, nullable=False)


class HouseholdEdit(SQLModel, table=True):
    """One profile edit as a phone sent it: an observation of the fields it names."""

    __tablename__ = "household_edit"
    __table_args__ = (Index("ix_household_edit_household_id", "household_id"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    household_id: uuid.UUID
    #: SHA-256 of (household, device, raw observed time, base version, fields): a resent
    #: edit is a duplicate.
    content_hash: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    device_id: uuid.UUID = Field(sa_column=Column(ForeignKey("device.id"), nullable=False))
    recorded_by: uuid.UUID = Field(sa_column=Column(ForeignKey("user_account.id"), nullable=False))
    batch_id: uuid.UUID
    observed_at_device: datetime = Field(sa_type=UTCDateTime, nullable=False)
    observed_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    future_clamped: bool = False
    base_version: int | None = None
    fields: dict[str, Any] = Field(default_factory=dict, sa_type=JSONDocument, nullable=False)
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
