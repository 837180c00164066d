"""The canonical household: profile fields plus the state folded from visits."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import Column, ForeignKey, String, Text
from sqlmodel import Field, SQLModel

from app.core.types import JSONDocument, UTCDateTime, utcnow


class Household(SQLModel, table=True):
    """One household in its current canonical state. `version` grows on every change."""

    __tablename__ = "household"

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
    review: dict[str, Any] = Field(default_factory=dict, sa_type=JSONDocument, nullable=False)
    version: int = 1
    merged_into: uuid.UUID | None = Field(
        default=None, sa_column=Column(ForeignKey("household.id"), nullable=True)
    )
    created_by: uuid.UUID | None = Field(
        default=None, sa_column=Column(ForeignKey("user_account.id"), nullable=True)
    )
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
