"""What the audit log endpoint returns: events, newest first, a page at a time."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue

EVENT_EXAMPLE: dict[str, JsonValue] = {
    "id": 48213,
    "occurred_at": "2026-11-20T07:58:12.402913Z",
    "actor_id": None,
    "actor_username": "admin",
    "action": "user.assign",
    "entity_type": "user",
    "entity_id": "6f1c2a9e-3b7d-4e25-8f0a-5d9c1b2e7a44",
    "reason": "",
    "before": {"username": "o.kovalenko", "settlements": ["UA6308013001"]},
    "after": {"username": "o.kovalenko", "settlements": ["UA6308013001", "UA6308013002"]},
}

FAILED_SIGN_IN_EXAMPLE: dict[str, JsonValue] = {
    "id": 48214,
    "occurred_at": "2026-11-20T08:03:40.118002Z",
    "actor_id": None,
    "actor_username": "m.shevchenko",
    "action": "auth.login_failed",
    "entity_type": "user",
    "entity_id": "0b7e4d1a-92c3-4f6b-a8d5-3e1f0c9b2a67",
    "reason": "wrong password",
    "before": None,
    "after": {"device_id": "3e2d1c0b-a9f8-4e7d-8c6b-5a4f3e2d1c0b"},
}


class AuditEventPublic(BaseModel):
    """One thing someone did: who, what, to which record, when, why, and what changed."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [EVENT_EXAMPLE]})

    id: int = Field(description="Grows with every event; ties in time are ordered by it.")
    occurred_at: datetime
    actor_id: uuid.UUID | None = Field(
        description="The account that acted, when it was signed in; null for the command line "
        "and for failed sign-ins."
    )
    actor_username: str = Field(
        description="The account's name; `cli` for the server's command line; for a failed "
        "sign-in and a sign-in lock (`auth.lockout`), the username that was typed."
    )
    action: str = Field(description="What was done, e.g. `auth.login`, `device.revoke`.")
    entity_type: str = Field(
        description="The kind of record acted on: user, device, settlement, visit, conflict, "
        "household; `address` for a client address locked after failed sign-ins."
    )
    entity_id: str = Field(description="Its id; empty when the act concerns no one record.")
    reason: str = Field(description="Why, as given; empty when none was asked for.")
    before: dict[str, Any] | None = Field(description="The values the act changed, before.")
    after: dict[str, Any] | None = Field(description="The values the act set.")


class AuditPage(BaseModel):
    """A page of events, newest first, and where the next (older) page starts."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "events": [FAILED_SIGN_IN_EXAMPLE, EVENT_EXAMPLE],
                    "next": "MjAyNi0xMS0yMFQwNzo1ODoxMi40MDI5MTMrMDA6MDB8NDgyMTM",
                }
            ]
        }
    )

    events: list[AuditEventPublic]
    next: str | None = Field(
        description="Pass as `cursor` with the same filters for the next, older page; null "
        "when this page is the last."
    )
