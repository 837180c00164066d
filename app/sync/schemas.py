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
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "batch_id": "2f6b9c1d-7e3a-4b5c-8d9e-0a1b2c3d4e5f",
                    "received_at": "2026-11-20T18:02:11Z",
                    "clock_offset_seconds": -10800.0,
                    "results": [
                        {
                            "kind": "household",
                            "id": "3f1c2b7a-8d4e-4a61-9c55-0e7b9a1d2c31",
                            "status": "applied",
                            "version": 1,
                            "conflicts": [],
                            "errors": [],
                        },
                        {
                            "kind": "visit",
                            "id": "c2a7e9d1-4b6f-4a3c-8d21-7e5f9b0a3c14",
                            "status": "rejected",
                            "version": None,
                            "conflicts": [],
                            "errors": [
                                {
                                    "field": "visits.0.reasons.0",
                                    "code": "unknown_code",
                                    "message": "'tired' is not a reason code",
                                }
                            ],
                        },
                    ],
                }
            ]
        }
    )

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
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "households": [
                        {
                            "id": "3f1c2b7a-8d4e-4a61-9c55-0e7b9a1d2c31",
                            "settlement": "UA6308013001",
                            "version": 4,
                            "address": "вул. Центральна, 12",
                            "location": {"lat": 49.7106, "lon": 37.6156, "accuracy_m": 8},
                            "head_name": "Коваленко Ганна (synthetic)",
                            "phone": "+380000000000",
                            "members": 3,
                            "members_elderly": 1,
                            "members_children": 0,
                            "members_disabled": 0,
                            "notes": "Собака у дворі.",
                            "decision": "stay",
                            "reasons": ["attachment_to_home"],
                            "needs": ["medical_escort"],
                            "planned_departure": None,
                            "last_outcome": "contacted",
                            "last_visit_at": "2026-11-20T07:15:00Z",
                            "updated_at": "2026-11-20T18:02:11Z",
                        }
                    ],
                    "settlements": [
                        {
                            "pcode": "UA6308013001",
                            "name_uk": "Куп'янськ-Вузловий",
                            "name_en": "Kupiansk-Vuzlovyi",
                            "category": "urban_type_settlement",
                            "hromada_pcode": "UA6308013",
                            "hromada_uk": "Куп'янсько-Вузлівська",
                            "hromada_en": "Kupiansko-Vuzlivska",
                            "raion_pcode": "UA6308",
                            "oblast_pcode": "UA63",
                            "evacuation_ordered": True,
                            "evacuation_ordered_on": "2023-08-10",
                        }
                    ],
                    "tombstones": [
                        {
                            "kind": "household",
                            "id": "9a6d4e21-5b3c-4f88-8e17-2c4b6a0f1d92",
                            "reason": "merged",
                            "merged_into": "3f1c2b7a-8d4e-4a61-9c55-0e7b9a1d2c31",
                        }
                    ],
                    "cursor": "eyJ2IjoxfQ.c2lnbmF0dXJl",
                    "has_more": False,
                }
            ]
        }
    )

    households: list[PulledHousehold]
    settlements: list[PulledSettlement]
    tombstones: list[PulledTombstone] = Field(
        description="Drop these. A settlement tombstone drops the settlement and every "
        "household in it."
    )
    cursor: str = Field(description="Send it back as `cursor` on the next pull.")
    has_more: bool
