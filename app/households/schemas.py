"""A household profile edit as a phone sends it."""

from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from app.core.text import Address, Instant, Location, Note, PhoneNumber, SettlementCode, ShortText

Count = Annotated[int, Field(ge=0, le=500)]

#: Profile fields a phone may edit; each one present in an edit is an observation of it.
PROFILE_FIELDS = (
    "settlement",
    "address",
    "location",
    "head_name",
    "phone",
    "members",
    "members_elderly",
    "members_children",
    "members_disabled",
    "notes",
)


class HouseholdIn(BaseModel):
    """A new household, or an edit of some of its profile fields.

    Only the fields present in the edit are changed. A new household
    (`base_version` null) must name its settlement.
    """

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "id": "0b7f6a1e-2c1d-4f7a-9a51-3f3e2a1c9d10",
                    "settlement": "UA6308013001",
                    "address": "вул. Центральна, 12",
                    "location": {"lat": 49.7106, "lon": 37.6156, "accuracy_m": 8},
                    "head_name": "Коваленко Ганна (synthetic)",
                    "phone": "+380000000000",
                    "members": 3,
                    "members_elderly": 1,
                    "members_children": 0,
                    "members_disabled": 0,
                    "notes": "Собака у дворі.",
                    "observed_at": "2026-11-20T09:15:00+02:00",
                    "base_version": None,
                }
            ]
        },
    )

    id: uuid.UUID
    settlement: SettlementCode | None = None
    address: Address | None = None
    location: Location | None = None
    head_name: ShortText | None = None
    phone: PhoneNumber | None = None
    members: Count | None = None
    members_elderly: Count | None = None
    members_children: Count | None = None
    members_disabled: Count | None = None
    notes: Note | None = None
    observed_at: Instant
    base_version: int | None = Field(default=None, ge=0, le=2**31 - 1)

    @field_validator("settlement")
    @classmethod
    def _settlement_not_null(cls, value: str | None) -> str:
        if value is None:  # only an explicit null gets here; leaving it out keeps it
            raise PydanticCustomError("not_nullable", "a household always has a settlement")
        return value

    def observed_fields(self) -> dict[str, object]:
        """The profile fields this edit sets, with their values as stored."""
        values: dict[str, object] = {}
        for name in PROFILE_FIELDS:
            if name not in self.model_fields_set:
                continue
            value = getattr(self, name)
            if isinstance(value, Location):
                value = value.model_dump()
            values[name] = value
        return values
