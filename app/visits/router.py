"""The code lists phones and partners read: outcomes, decisions, reasons, needs."""

from __future__ import annotations

from fastapi import APIRouter

from app.visits import service
from app.visits.schemas import CodeLists

router = APIRouter()


@router.get(
    "/codes",
    operation_id="sync:codes",
    summary="Code lists for visits",
    response_model=CodeLists,
    description="Every closed list a visit uses, with English and Ukrainian labels. "
    "`sensitive` answers are shown at household level to supervisors only. "
    "A visit with a code not listed here is rejected. No sign-in needed.",
)
async def codes() -> CodeLists:
    return service.code_lists()
