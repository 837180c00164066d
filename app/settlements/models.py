"""Settlements and the assignments that scope what each user may see."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import BigInteger, CheckConstraint, Column, ForeignKey, Index, String
from sqlmodel import Field, SQLModel

from app.core.types import UTCDateTime, utcnow

CATEGORIES = ("city", "rural_settlement", "village", "urban_type_settlement")


class Settlement(SQLModel, table=True):
    """A settlement with its P-code, names and parent admin codes, and its evacuation order."""

    __tablename__ = "settlement"
    __table_args__ = (
        CheckConstraint(
            "category IN (" + ", ".join(f"'{c}'" for c in CATEGORIES) + ")", name="category"
        ),
        Index("ix_settlement_feed", "feed_txid", "feed_seq"),
    )

    pcode: str = Field(sa_column=Column(String(12), primary_key=True))
    katottg: str = Field(sa_column=Column(String(19), nullable=False, unique=True))
    category: str = Field(max_length=32)
    name_uk: str = Field(max_length=120)
    name_en: str = Field(max_length=120)
    hromada_pcode: str = Field(max_length=9, index=True)
    hromada_uk: str = Field(max_length=120)
    hromada_en: str = Field(max_length=120)
    raion_pcode: str = Field(max_length=6)
    oblast_pcode: str = Field(max_length=4)
    evacuation_ordered: bool = False
    evacuation_ordered_on: date | None = None
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    #: The row's place in the pull feed, set by a database trigger (app/sync/feed.py).
    feed_txid: int = Field(default=0, sa_type=BigInteger, nullable=False)
    feed_seq: int = Field(default=0, sa_type=BigInteger, nullable=False)


class SettlementAssignment(SQLModel, table=True):
    """A user assigned to a settlement: field workers work there, supervisors review it."""

    __tablename__ = "settlement_assignment"

    user_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("user_account.id", ondelete="CASCADE"), primary_key=True)
    )
    settlement_pcode: str = Field(
        sa_column=Column(String(12), ForeignKey("settlement.pcode"), primary_key=True, index=True)
    )
    assigned_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
