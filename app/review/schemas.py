"""What supervisors send and get back when they review, resolve and merge."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.core.text import Note

H1 = "3f1c2b7a-8d4e-4a61-9c55-0e7b9a1d2c31"
H2 = "9a6d4e21-5b3c-4f88-8e17-2c4b6a0f1d92"
V1 = "c2a7e9d1-4b6f-4a3c-8d21-7e5f9b0a3c14"

HOUSEHOLD_EXAMPLE: dict[str, Any] = {
    "id": H1,
    "settlement": "UA6308013001",
    "address": "вул. Центральна, 12",
    "head_name": "Коваленко Ганна (synthetic)",
    "members": 3,
    "decision": "stay",
    "reasons": ["attachment_to_home", "caring_for_animals_or_land"],
    "needs": ["medical_escort"],
    "last_outcome": "contacted",
    "last_visit_at": "2026-11-20T07:15:00Z",
    "open_conflicts": 1,
    "version": 4,
}
VISIT_EXAMPLE: dict[str, Any] = {
    "id": V1,
    "household_id": H1,
    "recorded_by": "o.melnyk",
    "device_id": "5d0c3b8e-1f2a-4c6d-9e7b-8a9f0e1d2c3b",
    "visited_at": "2026-11-20T07:15:00Z",
    "visited_at_device": "2026-11-20T04:15:00Z",
    "clock_corrected": True,
    "received_at": "2026-11-20T18:02:11Z",
    "outcome": "contacted",
    "decision": "stay",
    "reasons": ["attachment_to_home"],
    "reason_note": "",
    "needs": ["medical_escort"],
    "people_present": 2,
    "consent_to_share": True,
    "notes": "Просить зателефонувати сину.",
    "corrects": None,
    "fold_state": "folded",
    "in_fold": True,
    "review_state": "unreviewed",
    "review_note": "",
}
CONFLICT_EXAMPLE: dict[str, Any] = {
    "id": "7b3e1f0a-2c4d-4e5f-8a9b-0c1d2e3f4a5b",
    "household_id": H1,
    "settlement": "UA6308013001",
    "address": "вул. Центральна, 12",
    "field": "decision",
    "kind": "decision_disagreement",
    "status": "open",
    "opened_at": "2026-11-20T18:02:11Z",
    "household_version": 4,
    "current_value": "stay",
    "candidates": [
        {
            "id": "0e1d2c3b-4a59-4687-9a0b-1c2d3e4f5a6b",
            "item_id": V1,
            "kind": "visit",
            "value": "stay",
            "recorded_by": "o.melnyk",
            "device_id": "5d0c3b8e-1f2a-4c6d-9e7b-8a9f0e1d2c3b",
            "recorded_at": "2026-11-20T07:15:00Z",
        },
        {
            "id": "1f2e3d4c-5b6a-4798-8b0c-2d3e4f5a6b7c",
            "item_id": "d4b8f0e2-5c7a-4b4d-9e32-8f6a0c1b4d25",
            "kind": "visit",
            "value": "leave",
            "recorded_by": "i.bondar",
            "device_id": "6e1d4c9f-2a3b-4d5e-8f6a-9b0c1d2e3f4a",
            "recorded_at": "2026-11-20T11:40:00Z",
        },
    ],
    "resolved_at": None,
    "resolved_by": None,
    "resolution": None,
    "resolution_note": "",
}

ReviewState = Literal["approved", "flagged", "rejected"]
#: Notes are free text in any language; the long limit is for the rare long explanation.
ReviewNote = Note


class HouseholdSummary(BaseModel):
    """A household as the review list shows it."""

    model_config = ConfigDict(json_schema_extra={"examples": [HOUSEHOLD_EXAMPLE]})

    id: uuid.UUID
    settlement: str
    address: str
    head_name: str
    members: int | None
    decision: str | None
    reasons: list[str]
    needs: list[str]
    last_outcome: str | None
    last_visit_at: datetime | None
    open_conflicts: int
    version: int


class HouseholdPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [HOUSEHOLD_EXAMPLE], "next": None}]}
    )

    items: list[HouseholdSummary]
    next: str | None = Field(
        description="Pass as `after` to get the next page; null on the last page."
    )


class VisitOut(BaseModel):
    """A stored visit: what the worker recorded, who, from which phone, and its review."""

    model_config = ConfigDict(json_schema_extra={"examples": [VISIT_EXAMPLE]})

    id: uuid.UUID
    household_id: uuid.UUID
    recorded_by: str = Field(description="The worker who recorded it (username).")
    device_id: uuid.UUID
    visited_at: datetime = Field(description="When, corrected for the phone's clock.")
    visited_at_device: datetime = Field(description="When, as the phone's clock said.")
    clock_corrected: bool
    received_at: datetime
    outcome: str
    decision: str | None
    reasons: list[str]
    reason_note: str
    needs: list[str]
    people_present: int | None
    consent_to_share: bool
    notes: str
    corrects: uuid.UUID | None = Field(description="The earlier visit this one replaces.")
    fold_state: Literal["pending", "folded"] = Field(
        description="`pending`: its household has not arrived yet."
    )
    in_fold: bool = Field(
        description="Whether it counts in the household's state: not rejected, not replaced."
    )
    review_state: str
    review_note: str


class VisitPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [VISIT_EXAMPLE], "next": None}]}
    )

    items: list[VisitOut]
    next: str | None = Field(description="Pass as `after` for the next page; null at the end.")


class ReviewIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"state": "rejected", "note": "Записано не ту адресу; повторний візит 21.11."}
            ]
        },
    )

    state: ReviewState = Field(
        description="`approved`, `flagged` (look again) or `rejected` (stops counting)."
    )
    note: ReviewNote = Field(default="", description="Why; kept in the audit log.")


class ReviewedVisit(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "visit": {**VISIT_EXAMPLE, "review_state": "rejected", "in_fold": False},
                    "household_version": 5,
                }
            ]
        }
    )

    visit: VisitOut
    household_version: int | None = Field(
        description="The household's version after the review; null while it is pending."
    )


class CandidateOut(BaseModel):
    id: uuid.UUID
    item_id: uuid.UUID = Field(description="The visit or household edit that recorded it.")
    kind: str
    value: Any
    recorded_by: str = Field(description="Username of the worker.")
    device_id: uuid.UUID
    recorded_at: datetime


class ConflictOut(BaseModel):
    """A disagreement over one field of one household, with every candidate value."""

    model_config = ConfigDict(json_schema_extra={"examples": [CONFLICT_EXAMPLE]})

    id: uuid.UUID
    household_id: uuid.UUID
    settlement: str
    address: str
    field: str
    kind: str
    status: Literal["open", "resolved"]
    opened_at: datetime
    household_version: int = Field(
        description="Send it back with a resolution: if the household changed meanwhile, "
        "the resolution is refused (409) so you can look again."
    )
    current_value: Any = Field(description="The value the household holds now.")
    candidates: list[CandidateOut]
    resolved_at: datetime | None
    resolved_by: str | None
    resolution: dict[str, Any] | None
    resolution_note: str


class ConflictPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [CONFLICT_EXAMPLE], "next": None}]}
    )

    items: list[ConflictOut]
    next: str | None = Field(description="Pass as `after` for the next page; null at the end.")


class ResolutionIn(BaseModel):
    """Choose one of the candidates, or enter the right value; say why."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "candidate_id": "1f2e3d4c-5b6a-4798-8b0c-2d3e4f5a6b7c",
                    "note": "Зателефонувала родині: виїжджають 22.11 автобусом.",
                    "household_version": 4,
                },
                {"value": "undecided", "note": "Родина ще вирішує.", "household_version": 4},
            ]
        },
    )

    candidate_id: uuid.UUID | None = Field(default=None, description="The candidate chosen.")
    value: Any = Field(
        default=None,
        description="Or the value to set, in the field's shape (for `location`, "
        '`{"lat", "lon", "accuracy_m"}`).',
    )
    note: ReviewNote = Field(description="Why this value; kept with the conflict and audited.")
    household_version: int | None = Field(
        default=None, description="The `household_version` you saw; 409 if it moved on."
    )


class HouseholdDetail(BaseModel):
    """A household with everything recorded about it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "household": {
                        **{k: HOUSEHOLD_EXAMPLE[k] for k in ("id", "address", "head_name")},
                        "settlement_pcode": "UA6308013001",
                        "phone": "+380000000000",
                        "members": 3,
                        "decision": "stay",
                        "version": 4,
                        "merged_into": None,
                    },
                    "visits": [VISIT_EXAMPLE],
                    "edits": [
                        {
                            "id": "2b4d6f80-1a3c-4e5f-9a7b-0c2d4e6f8a1b",
                            "recorded_by": "o.melnyk",
                            "device_id": "5d0c3b8e-1f2a-4c6d-9e7b-8a9f0e1d2c3b",
                            "observed_at": "2026-11-19T08:00:00Z",
                            "observed_at_device": "2026-11-19T08:00:00Z",
                            "received_at": "2026-11-19T17:30:02Z",
                            "base_version": None,
                            "fields": {"address": "вул. Центральна, 12", "members": 3},
                        }
                    ],
                    "conflicts": [CONFLICT_EXAMPLE],
                    "merged_from": [H2],
                }
            ]
        }
    )

    household: dict[str, Any] = Field(description="The canonical state, every column.")
    visits: list[VisitOut]
    edits: list[dict[str, Any]] = Field(
        description="Profile edits as phones sent them: who, when, which fields."
    )
    conflicts: list[ConflictOut]
    merged_from: list[uuid.UUID] = Field(description="Households merged into this one.")


class MergeIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"duplicate_id": H2, "note": "Та сама хата: двічі записали 19 і 20.11."}]
        },
    )

    duplicate_id: uuid.UUID = Field(description="The household to fold into this one.")
    note: ReviewNote = Field(description="Why they are the same household; audited.")


class MergeOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "survivor_id": H1,
                    "duplicate_id": H2,
                    "visits_moved": 2,
                    "survivor_version": 5,
                    "already_merged": False,
                }
            ]
        }
    )

    survivor_id: uuid.UUID
    duplicate_id: uuid.UUID
    visits_moved: int
    survivor_version: int
    already_merged: bool = Field(description="True when this merge had been done before.")


class DuplicatePair(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "first": {"id": H1, "address": "вул. Центральна, 12", "version": 4},
                    "second": {"id": H2, "address": "вулиця Центральна 12", "version": 1},
                    "reasons": ["same_address", "within 9 m"],
                    "distance_m": 9.2,
                }
            ]
        }
    )

    first: dict[str, Any]
    second: dict[str, Any]
    reasons: list[str] = Field(description="`same_address`, and/or `within N m`.")
    distance_m: float | None
