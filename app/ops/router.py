"""`/healthz` (the process is alive) and `/readyz` (the database is reachable and migrated)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.ops import service
from app.ops.schemas import Health, Readiness

router = APIRouter()


@router.get(
    "/healthz",
    operation_id="ops:health",
    summary="Is the server process alive",
    response_model=Health,
    description="Answers as long as the process runs; it does not touch the database.",
)
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    operation_id="ops:ready",
    summary="Is the server ready for traffic",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Database unreachable or not migrated."}},
    description="200 when the database answers and is migrated to the code's revision; "
    "503 otherwise, with what is wrong.",
)
async def readyz(request: Request) -> JSONResponse:
    result = await service.readiness(request.app.state.engine)
    status = 200 if result.status == "ready" else 503
    return JSONResponse(result.model_dump(), status_code=status)
