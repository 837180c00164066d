"""The push envelope and its per-item results (docs/PROTOCOL.md, "Push")."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.core.errors import FieldError
from app.core.text import Instant, Location, Tag
from app.households.schemas import HouseholdIn
from app.visits.schemas import VISIT_EXAMPLE, VisitIn

ItemStatus = Literal["applied", "duplicate", "conflict", "pending", "rejected"]


class PushEnvelope(BaseModel):
    """A batch as the phone sends it. Items are checked one by one after the envelope."""

    model_config = ConfigDict(extra="ignore")

    batch_id: uuid.UUID
    device_id: uuid.UUID
    sent_at: Instant
    app_version: Tag = ""
    households: list[Any] = Field(default_factory=list)
    visits: list[Any] = Field(default_factory=list)


class PushRequest(PushEnvelope):
    """The documented shape of a push body (the server validates each item on its own)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "batch_id": "9d3c1f4e-8b2a-4c6d-9e0f-1a2b3c4d5e6f",
                    "device_id": "3e2d1c0b-a9f8-4e7d-8c6b-5a4f3e2d1c0b",
                    "sent_at": "2026-11-20T18:02:11+02:00",
                    "app_version": "1.4.2",
                    "households": [],
                    "visits": [VISIT_EXAMPLE],
                }
            ]
        }
    )

    households: list[HouseholdIn] = Field(default_factory=list)
    visits: list[VisitIn] = Field(default_factory=list)


class ItemResult(BaseModel):
    kind: Literal["household", "visit"]
    id: str = Field(description="The item's id as sent (for an unreadable id, its position).")
    status: ItemStatus
    version: int | None = Field(
        default=None, description="The household's version after this batch, when it is stored."
    )
    conflicts: list[uuid.UUID] = Field(default_factory=list)
    errors: list[FieldError] = Field(default_factory=list)


class PushResponse(BaseModel):
    batch_id: uuid.UUID
    received_at: datetime
    clock_offset_seconds: float = Field(
        description="How far the phone's clock was behind (positive) or ahead (negative)."
    )
    results: list[ItemResult]


class PulledHousehold(BaseModel):
    """A household as phones hold it: its canonical state."""

    id: uuid.UUID
    settlement: str
    version: int
    address: str
    location: Location | None
    head_name: str
    phone: str
    members: int | None
    members_elderly: int | None
    members_children: int | None
    members_disabled: int | None
    notes: str
    decision: str | None
    reasons: list[str] = Field(
        description="Sensitive reasons are sent to supervisors only (see /api/v1/codes)."
    )
    needs: list[str]
    planned_departure: date | None
    last_outcome: str | None
    last_visit_at: datetime | None
    updated_at: datetime


class PulledSettlement(BaseModel):
    pcode: str
    name_uk: str
    name_en: str
    category: str
    hromada_pcode: str
    hromada_uk: str
    hromada_en: str
    raion_pcode: str
    oblast_pcode: str
    evacuation_ordered: bool
    evacuation_ordered_on: date | None


class PulledTombstone(BaseModel):
    kind: Literal["household", "settlement"]
    id: str = Field(description="The household id, or the settlement's P-code.")
    reason: Literal["merged", "moved", "deleted", "unassigned"]
    merged_into: uuid.UUID | None = Field(
        default=None, description="For a merged household, the household that absorbed it."
    )


class PullResponse(BaseModel):
    households: list[PulledHousehold]
    settlements: list[PulledSettlement]
    tombstones: list[PulledTombstone] = Field(
        description="Drop these. A settlement tombstone drops the settlement and every "
        "household in it."
    )
    cursor: str = Field(description="Send it back as `cursor` on the next pull.")
    has_more: bool
