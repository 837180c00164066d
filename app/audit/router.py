"""The audit log, read-only: who did what, when. Nothing here changes an event."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.audit import service
from app.audit.schemas import AuditPage
from app.auth.deps import Admin
from app.core.deps import SessionDep
from app.core.openapi import errors
from app.core.text import NO_NUL, Instant

router = APIRouter()

MAX_PAGE = 1000


@router.get(
    "",
    operation_id="audit:list",
    summary="Read the audit log",
    response_model=AuditPage,
    responses=errors(400, 401, 403, 422),
    description="What people did, newest first: sign-ins and failed sign-ins, phones "
    "registered and revoked, accounts created, settlements assigned and taken away, "
    "settlement lists imported, visits reviewed, conflicts resolved, households merged. Each "
    "event says who acted, on which record, when, why, and what changed. Administrators "
    "only. The log cannot be changed or deleted through the API.\n\n"
    "Narrow it down with any of the filters; an event must match all of those given. "
    "`actor` is a username or an account id; `from` and `to` are times with their offset, "
    "such as `2026-11-20T08:00:00+02:00` (a time without one is refused): `from` is "
    "included, `to` is not.\n\n"
    "A page holds at most `limit` events. When there are more, `next` is set: ask again "
    "with the same filters and `cursor` set to it. Follow `next` until it is null to read "
    "every matching event, each once.",
)
async def list_events(
    _: Admin,
    session: SessionDep,
    actor: Annotated[
        str | None,
        Query(
            max_length=64,
            pattern=NO_NUL,
            description="Who acted: a username (`cli` for the server's command line) or an "
            "account id.",
            examples=["o.kovalenko"],
        ),
    ] = None,
    action: Annotated[
        str | None,
        Query(
            max_length=64,
            pattern=NO_NUL,
            description="What was done, exactly.",
            examples=["auth.login"],
        ),
    ] = None,
    entity_type: Annotated[
        str | None,
        Query(
            max_length=32,
            pattern=NO_NUL,
            description="The kind of record: user, device, settlement, visit, conflict, household.",
            examples=["device"],
        ),
    ] = None,
    entity_id: Annotated[
        str | None,
        Query(
            max_length=64,
            pattern=NO_NUL,
            description="The record's id, e.g. an account's or a phone's.",
            examples=["6f1c2a9e-3b7d-4e25-8f0a-5d9c1b2e7a44"],
        ),
    ] = None,
    occurred_from: Annotated[
        Instant | None,
        Query(
            alias="from",
            description="Events at or after this time (with its offset).",
            examples=["2026-11-20T00:00:00+02:00"],
        ),
    ] = None,
    occurred_to: Annotated[
        Instant | None,
        Query(
            alias="to",
            description="Events before this time (with its offset).",
            examples=["2026-11-21T00:00:00+02:00"],
        ),
    ] = None,
    cursor: Annotated[
        str | None,
        Query(max_length=200, description="The `next` of the previous page; none to start."),
    ] = None,
    limit: Annotated[
        int, Query(ge=1, le=MAX_PAGE, description="At most this many events on the page.")
    ] = 100,
) -> AuditPage:
    wanted = service.AuditFilter(
        actor=actor,
        action=action,
        entity_type=entity_type,
        entity_id=entity_id,
        occurred_from=occurred_from,
        occurred_to=occurred_to,
    )
    return await service.events(session, wanted, cursor=cursor, limit=limit)
