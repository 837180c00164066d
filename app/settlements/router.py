"""Each settlement's progress, for supervisors: households, visits, decisions, needs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from app.auth.deps import Reviewer
from app.core.deps import SessionDep
from app.core.openapi import errors
from app.core.text import SETTLEMENT_PCODE
from app.settlements import service
from app.settlements.schemas import SettlementProgress, SettlementSummary

router = APIRouter()


@router.get(
    "",
    operation_id="settlements:list",
    summary="Progress in each of your settlements",
    response_model=list[SettlementProgress],
    responses=errors(401, 403),
    description="One row per settlement you look after, ordered by P-code: its names, its "
    "hromada, whether it is under the evacuation order, and where the work stands: how many "
    "households are registered, how many have been visited, how many will leave, stay or "
    "have not decided, how many have no decision recorded yet, how many need transport, how "
    "many conflicts wait for you, and when the last visit was.\n\n"
    "Households merged into another are not counted. A supervisor sees the settlements "
    "assigned to them, or every settlement when none is assigned; an administrator sees "
    "every settlement. Field workers and partners cannot use this.",
)
async def list_progress(principal: Reviewer, session: SessionDep) -> list[SettlementProgress]:
    scope = await service.visible_pcodes(session, principal.user_id, principal.role)
    return await service.progress(session, scope)


@router.get(
    "/{pcode}/summary",
    operation_id="settlements:summary",
    summary="One settlement's progress, with reasons and needs",
    response_model=SettlementSummary,
    responses=errors(401, 403, 404, 422),
    description="The same numbers as the list, for one settlement, and two tables: for every "
    "reason code (why households stay or leave, the sensitive ones included), how many "
    "households gave it, and for every need code, how many households have it. A household "
    "that gave several reasons counts under each. Most frequent first; codes nobody gave "
    "show 0.\n\n"
    "404 if no settlement has this P-code; 403 if it is not one of yours.",
)
async def settlement_summary(
    pcode: Annotated[
        str,
        Path(
            pattern=SETTLEMENT_PCODE,
            description="The settlement's P-code.",
            examples=["UA6308013001"],
        ),
    ],
    principal: Reviewer,
    session: SessionDep,
) -> SettlementSummary:
    scope = await service.visible_pcodes(session, principal.user_id, principal.role)
    return await service.summary(session, pcode, scope)
