"""The phones' endpoints: push a batch of visits and household edits, pull the changes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from app.auth.deps import require_roles
from app.auth.models import Role
from app.auth.service import Principal
from app.core.body import read_body
from app.core.deps import SessionDep, SettingsDep
from app.core.errors import DomainError
from app.core.openapi import errors
from app.core.types import utcnow
from app.sync import feed, service
from app.sync.schemas import PullResponse, PushResponse

router = APIRouter()


#: Field workers and supervisors record visits from a registered phone.
PhoneUser = Annotated[Principal, Depends(require_roles(Role.field_worker, Role.supervisor))]


@router.post(
    "/push",
    operation_id="sync:push",
    summary="Upload a batch of visits and household edits (phones)",
    response_model=PushResponse,
    responses=errors(400, 401, 403, 409, 413, 415, 422, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/PushRequest"}}
            },
        }
    },
    description="Phones call this whenever they have signal. Each item gets its own result, "
    "in request order: `applied`, `duplicate`, `conflict`, `pending` (its household has not "
    "arrived yet) or `rejected` with the reasons. Sending the same batch again (same "
    "`batch_id`) returns the same answer and stores nothing twice. The body may be gzip "
    "(`Content-Encoding: gzip`); its size limit applies after decompression. "
    "See docs/PROTOCOL.md.",
)
async def push(
    request: Request, principal: PhoneUser, session: SessionDep, settings: SettingsDep
) -> Response:
    received_at = utcnow()
    try:
        body = await read_body(request, settings.batch_max_bytes)
        answer = await service.push(session, settings, principal, body, received_at)
    except DomainError as exc:
        service.count_refused(exc)
        raise
    return Response(content=answer, media_type="application/json")


@router.get(
    "/pull",
    operation_id="sync:pull",
    summary="Download what changed in your settlements since your cursor (phones)",
    response_model=PullResponse,
    responses=errors(400, 401, 403, 410, 422, 503),
    description="Pull from no cursor to get everything, then from the cursor each page "
    "returns until `has_more` is false. Households come in their current state, once per "
    "page; `tombstones` name households to drop (merged, moved away) and settlements no "
    "longer assigned to you (drop them with their households). A cursor is opaque and "
    "signed: a changed one is 400. A cursor older than the server keeps, issued before your "
    "role changed, or ahead of the server's data is 410: pull again without a cursor. Send "
    "`Accept-Encoding: gzip`. See docs/PROTOCOL.md.",
)
async def pull(
    principal: PhoneUser,
    session: SessionDep,
    settings: SettingsDep,
    cursor: Annotated[
        str | None,
        Query(description="The cursor of the last page; none to start."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=5000, description="At most this many changes.")] = 500,
) -> Response:
    answer = await feed.pull(session, settings, principal, cursor, limit)
    return Response(content=answer, media_type="application/json")
