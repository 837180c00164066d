"""An open or resolved conflict over one field of one household."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlmodel import Field, SQLModel

from app.core.types import JSONDocument, UTCDateTime, utcnow


class Conflict(SQLModel, table=True):
    """A disagreement over one field of one household, open until a supervisor resolves it.

    Its candidates are rows of `conflict_candidate`: one open conflict gathers every
    later candidate by inserting, never by rewriting a growing document.
    """

    __tablename__ = "conflict"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'resolved')", name="status"),
        # One open conflict per household and field gathers every later candidate.
        Index(
            "uq_conflict_open_household_field",
            "household_id",
            "field",
            unique=True,
            postgresql_where=text("status = 'open'"),
            sqlite_where=text("status = 'open'"),
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    household_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("household.id"), nullable=False, index=True)
    )
    field: str = Field(max_length=40)
    kind: str = Field(max_length=40)
    status: str = Field(default="open", sa_column=Column(String(16), nullable=False))
    opened_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    resolved_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    resolved_by: uuid.UUID | None = Field(
        default=None, sa_column=Column(ForeignKey("user_account.id"), nullable=True)
    )
    resolution: dict[str, Any] | None = Field(default=None, sa_type=JSONDocument)
    resolution_note: str = Field(default="", sa_type=Text)


class ConflictCandidate(SQLModel, table=True):
    """One candidate value of a conflict: what was recorded, by whom, from which phone, when."""

    __tablename__ = "conflict_candidate"
    __table_args__ = (UniqueConstraint("conflict_id", "item_id"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    conflict_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("conflict.id", ondelete="CASCADE"), nullable=False)
    )
    #: The visit or household edit that recorded the value.
    item_id: uuid.UUID
    kind: str = Field(max_length=32)
    value: Any = Field(default=None, sa_type=JSONDocument)
    recorded_by: uuid.UUID
    device_id: uuid.UUID
    #: The observation's corrected time.
    recorded_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    added_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
