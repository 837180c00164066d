"""Queries on the audit log: append and read. Nothing here updates or deletes an event."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.models import AuditEvent
from app.auth.models import User

_event = AuditEvent.__table__  # type: ignore[attr-defined]
_user = User.__table__  # type: ignore[attr-defined]


async def add(session: AsyncSession, event: AuditEvent) -> AuditEvent:
    session.add(event)
    await session.flush()
    return event


async def page(
    session: AsyncSession,
    *,
    actor_id: uuid.UUID | None = None,
    actor_username: str | None = None,
    action: str | None = None,
    entity_type: str | None = None,
    entity_id: str | None = None,
    occurred_from: datetime | None = None,
    occurred_to: datetime | None = None,
    after: tuple[datetime, int] | None = None,
    limit: int,
) -> list[AuditEvent]:
    """Events newest first (occurred_at, then id, both descending), after the keyset
    position `after` (the last event of the previous page), at most `limit` of them.

    An actor is matched by id or by name: an event that names the account by either
    counts (a failed sign-in knows only the name that was typed).
    """
    e = _event.c
    where: list[ColumnElement[bool]] = []
    if actor_id is not None:
        name = select(_user.c.username).where(_user.c.id == actor_id).scalar_subquery()
        where.append(or_(e.actor_id == actor_id, e.actor_username == name))
    if actor_username is not None:
        owner = select(_user.c.id).where(_user.c.username == actor_username).scalar_subquery()
        where.append(or_(e.actor_username == actor_username, e.actor_id == owner))
    if action is not None:
        where.append(e.action == action)
    if entity_type is not None:
        where.append(e.entity_type == entity_type)
    if entity_id is not None:
        where.append(e.entity_id == entity_id)
    if occurred_from is not None:
        where.append(e.occurred_at >= occurred_from)
    if occurred_to is not None:
        where.append(e.occurred_at < occurred_to)
    if after is not None:
        at, event_id = after
        where.append(or_(e.occurred_at < at, and_(e.occurred_at == at, e.id < event_id)))
    result = await session.execute(
        select(AuditEvent).where(*where).order_by(e.occurred_at.desc(), e.id.desc()).limit(limit)
    )
    return list(result.scalars())
