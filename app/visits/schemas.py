"""A visit as a phone sends it, and the rules that tie its fields together."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StrictBool,
)
from pydantic_core import PydanticCustomError

from app.core.errors import FieldError
from app.core.text import Address, Instant, Location, Note
from app.visits import codes


def _known(kind: str, allowed: frozenset[str]) -> AfterValidator:
    def check(value: str) -> str:
        if value not in allowed:
            raise PydanticCustomError(
                "unknown_code",
                "'{value}' is not a {kind} code; see GET /api/v1/codes",
                {"value": value[:64], "kind": kind},
            )
        return value

    return AfterValidator(check)


ReasonCode = Annotated[str, Field(max_length=64), _known("reason", codes.ALL_REASONS)]
NeedCode = Annotated[str, Field(max_length=64), _known("need", codes.NEED_CODES)]

VISIT_EXAMPLE: dict[str, JsonValue] = {
    "id": "6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b",
    "household_id": "0b7f6a1e-2c1d-4f7a-9a51-3f3e2a1c9d10",
    "visited_at": "2026-11-20T09:20:00+02:00",
    "outcome": "contacted",
    "decision": "stay",
    "reasons": ["attachment_to_home", "caring_for_animals_or_land"],
    "reason_note": "",
    "signed_refusal": True,
    "people_present": 2,
    "needs": ["information"],
    "consent_to_share": True,
    "location": {"lat": 49.7106, "lon": 37.6156, "accuracy_m": 8},
    "notes": "Просять повідомити про наступний автобус.",
}


class VisitIn(BaseModel):
    """One observation at a household's door. Immutable once stored."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [VISIT_EXAMPLE]})

    id: uuid.UUID
    household_id: uuid.UUID
    visited_at: Instant
    outcome: Literal["contacted", "not_home", "refused", "household_left", "house_damaged"]
    decision: Literal["leave", "stay", "undecided"] | None = None
    reasons: list[ReasonCode] = Field(default_factory=list, max_length=30)
    reason_note: Note = ""
    leave_mode: Literal["organised_evacuation", "own_means"] | None = None
    signed_refusal: StrictBool | None = None
    people_present: Annotated[int, Field(ge=0, le=500)] | None = None
    needs: list[NeedCode] = Field(default_factory=list, max_length=30)
    planned_departure: date | None = None
    destination: Address = ""
    consent_to_share: StrictBool = False
    location: Location | None = None
    notes: Note = ""
    corrects: uuid.UUID | None = None


def visit_rule_errors(visit: VisitIn, prefix: str) -> list[FieldError]:
    """Rules across fields, each reported on the field that breaks it."""
    errors: list[FieldError] = []

    def error(field: str, code: str, message: str) -> None:
        errors.append(FieldError(field=f"{prefix}.{field}", code=code, message=message))

    contacted = visit.outcome == "contacted"
    if contacted and visit.decision is None:
        error("decision", "missing", "is required when the outcome is contacted")
    if not contacted and visit.decision is not None:
        error("decision", "not_allowed", "is only recorded when the outcome is contacted")
    allowed = codes.reasons_for(visit.decision)
    for i, reason in enumerate(visit.reasons):
        if reason not in allowed:
            error(
                f"reasons.{i}",
                "reason_not_for_decision",
                f"'{reason}' is not a reason to {visit.decision}",
            )
    for name, values in (("reasons", visit.reasons), ("needs", visit.needs)):
        if len(set(values)) != len(values):
            error(name, "duplicate", "lists a code more than once")
    if codes.OTHER in visit.reasons and not visit.reason_note.strip():
        error("reason_note", "missing", "is required when the reasons include 'other'")
    if codes.NO_NEEDS in visit.needs and len(visit.needs) > 1:
        error("needs", "contradictory", "'none' cannot be combined with other needs")
    if visit.leave_mode is not None and visit.decision != "leave":
        error("leave_mode", "not_allowed", "is only recorded when the decision is leave")
    if visit.signed_refusal is not None and visit.decision != "stay":
        error("signed_refusal", "not_allowed", "is only recorded when the decision is stay")
    if visit.corrects == visit.id:
        error("corrects", "invalid", "a visit cannot correct itself")
    return errors


class CodeOut(BaseModel):
    code: str = Field(examples=["attachment_to_home"])
    en: str = Field(examples=["Attachment to home"])
    uk: str = Field(examples=["Прив'язаність до дому"])
    sensitive: bool


class CodeLists(BaseModel):
    """Every closed list a visit uses. Unknown codes reject the visit."""

    outcomes: list[CodeOut]
    decisions: list[CodeOut]
    reasons_stay: list[CodeOut]
    reasons_leave: list[CodeOut]
    needs: list[CodeOut]
    leave_modes: list[CodeOut]
