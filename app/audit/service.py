"""Recording what people did: one append-only event per act."""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import repository
from app.audit.models import AuditEvent
from app.audit.schemas import AuditEventPublic, AuditPage
from app.core.errors import BadRequest, FieldError, Invalid


async def record(
    session: AsyncSession,
    *,
    action: str,
    entity_type: str,
    entity_id: str | uuid.UUID = "",
    actor_id: uuid.UUID | None = None,
    actor_username: str = "",
    reason: str = "",
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event in the caller's transaction, so it commits or rolls back with the act."""
    return await repository.add(
        session,
        AuditEvent(
            action=action,
            entity_type=entity_type,
            entity_id=str(entity_id),
            actor_id=actor_id,
            actor_username=actor_username,
            reason=reason,
            before=before,
            after=after,
        ),
    )


# --- Reading the log -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """What to look for; every field given must match. `actor` is a username or a user id."""

    actor: str | None = None
    action: str | None = None
    entity_type: str | None = None
    entity_id: str | None = None
    occurred_from: datetime | None = None
    occurred_to: datetime | None = None


def encode_cursor(event: AuditEvent) -> str:
    """Where the next page starts: after this event, in the log's order. Opaque to clients."""
    assert event.id is not None
    text = f"{event.occurred_at.isoformat()}|{event.id}"
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


def decode_cursor(value: str) -> tuple[datetime, int]:
    """The (time, id) of the last event of the previous page; 400 if it is not a cursor
    this endpoint returned."""
    try:
        text = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
        at_text, id_text = text.split("|")
        at, event_id = datetime.fromisoformat(at_text), int(id_text)
        if at.tzinfo is None or not 0 < event_id < 2**63:
            raise ValueError("naive time or id out of range")
        if not 1900 < at.astimezone(UTC).year < 2200:  # may overflow, too
            raise ValueError("time out of range")
    except (ValueError, UnicodeDecodeError, binascii.Error, OverflowError):
        raise BadRequest(
            "The cursor is not one this endpoint returned. Pass `next` exactly as the last "
            "page gave it, or leave `cursor` out to start from the newest event.",
            errors=[FieldError(field="cursor", code="invalid", message="is not a page cursor")],
        ) from None
    return at, event_id


def _actor(value: str | None) -> tuple[uuid.UUID | None, str | None]:
    """(user id, None) when `value` reads as a user id, else (None, username)."""
    if value is None:
        return None, None
    try:
        return uuid.UUID(value), None
    except ValueError:
        return None, value


async def events(
    session: AsyncSession, wanted: AuditFilter, *, cursor: str | None, limit: int
) -> AuditPage:
    """A page of the events that match, newest first, and the cursor of the next page."""
    if (
        wanted.occurred_from is not None
        and wanted.occurred_to is not None
        and wanted.occurred_to <= wanted.occurred_from
    ):
        raise Invalid(
            "`to` must be later than `from`.",
            errors=[FieldError(field="to", code="before_from", message="is not after `from`")],
        )
    actor_id, actor_username = _actor(wanted.actor)
    rows = await repository.page(
        session,
        actor_id=actor_id,
        actor_username=actor_username,
        action=wanted.action,
        entity_type=wanted.entity_type,
        entity_id=wanted.entity_id,
        occurred_from=wanted.occurred_from,
        occurred_to=wanted.occurred_to,
        after=decode_cursor(cursor) if cursor is not None else None,
        limit=limit + 1,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return AuditPage(
        events=[AuditEventPublic.model_validate(row) for row in rows],
        next=encode_cursor(rows[-1]) if more else None,
    )
