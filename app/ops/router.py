"""`/healthz` (the process is alive), `/readyz` (the database is reachable and migrated)
and `/metrics` (Prometheus)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import JSONResponse

from app.core import metrics as prometheus
from app.core.deps import SettingsDep
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


@router.get("/metrics", include_in_schema=False)
async def metrics(
    request: Request,
    settings: SettingsDep,
    authorization: Annotated[str | None, Header()] = None,
) -> Response:
    """Prometheus metrics of every worker process. Left out of the OpenAPI document: it
    is for the monitoring system, not for the API's users (README, "Operations")."""
    client = request.client.host if request.client else None
    service.check_metrics_access(settings.metrics_token, client, authorization)
    page = await service.metrics_page(request.app.state.sessionmaker)
    return Response(page, media_type=prometheus.CONTENT_TYPE)
