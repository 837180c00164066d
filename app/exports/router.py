"""Exports: household-level, visit-level and per-settlement files, streamed."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from app.auth.deps import CurrentPrincipal
from app.auth.service import Principal
from app.core.config import Settings
from app.core.deps import SettingsDep
from app.core.openapi import errors
from app.core.text import HROMADA_PCODE, SETTLEMENT_PCODE, Instant
from app.exports import formats, service
from app.exports.repository import Filters

router = APIRouter()

Format = Literal["csv", "xlsx", "geojson", "jsonl"]
FILE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The file, streamed. `X-Export-Rows` says how many rows it holds.",
        "content": {media: {} for media in formats.MEDIA_TYPES.values()},
    },
    **errors(400, 401, 403, 422, 503),
}
PARTNER_PROTECTION = (
    "For partners the data is always protected: no names, phone numbers, addresses, exact "
    "locations or free text; no sensitive reasons; household ids replaced by a pseudonym "
    "that is stable across your exports and different for every partner; dates as ISO "
    "weeks; household sizes top-coded (`8+`, `3+`); locations at the settlement's centroid "
    "at most. Supervisors and administrators get everything unless they ask for "
    "`protected=true`. Every export is recorded in the audit log. Column tags follow HXL "
    "(the README lists them)."
)


async def _stream(
    request: Request,
    principal: Principal,
    settings: Settings,
    kind: str,
    file_format: str,
    filters: Filters,
    protected: bool | None,
) -> StreamingResponse:
    export = await service.open_export(
        request.app.state.sessionmaker,
        settings,
        principal,
        kind,
        file_format,
        filters,
        protect=protected,
    )
    return StreamingResponse(
        export.chunks,
        media_type=export.media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{export.filename}"',
            "X-Export-Rows": str(export.rows),
            "Cache-Control": "no-store",
        },
    )


async def export_filters(
    settlement: Annotated[
        str | None,
        Query(pattern=SETTLEMENT_PCODE, description="One settlement.", examples=["UA6308013001"]),
    ] = None,
    hromada: Annotated[
        str | None,
        Query(pattern=HROMADA_PCODE, description="One hromada.", examples=["UA6308013"]),
    ] = None,
    date_from: Annotated[
        date | None,
        Query(description="From this day (UTC): a visit's day, or a household's last visit."),
    ] = None,
    date_to: Annotated[date | None, Query(description="Up to this day (UTC), included.")] = None,
    decision: Annotated[Literal["leave", "stay", "undecided"] | None, Query()] = None,
    as_of: Annotated[
        Instant | None,
        Query(description="As the server knew it then (with a timezone); not when protected."),
    ] = None,
) -> Filters:
    """The filters every export takes."""
    return Filters(settlement, hromada, date_from, date_to, decision, as_of)


ExportFilters = Annotated[Filters, Depends(export_filters)]


FormatQuery = Annotated[Format, Query(description="csv (with an HXL row), xlsx, geojson, jsonl.")]
Protected = Annotated[
    bool | None,
    Query(description="Supervisors: apply partner data protection. Partners: always on."),
]


@router.get(
    "/households",
    operation_id="exports:households",
    summary="Households in their current state (one row each)",
    response_class=StreamingResponse,
    responses=FILE_RESPONSE,
    description="One row per household with its decision, reasons, needs and size. For "
    "partners, only households whose latest conversation agreed to share. " + PARTNER_PROTECTION,
)
async def households(
    request: Request,
    principal: CurrentPrincipal,
    settings: SettingsDep,
    filters: ExportFilters,
    format: FormatQuery = "csv",
    protected: Protected = None,
) -> StreamingResponse:
    return await _stream(request, principal, settings, "households", format, filters, protected)


@router.get(
    "/visits",
    operation_id="exports:visits",
    summary="Every stored visit (one row each; supervisors and admins)",
    response_class=StreamingResponse,
    responses=FILE_RESPONSE,
    description="One row per visit with who recorded it, when, and whether it still counts. "
    "Not for partners. " + PARTNER_PROTECTION,
)
async def visits(
    request: Request,
    principal: CurrentPrincipal,
    settings: SettingsDep,
    filters: ExportFilters,
    format: FormatQuery = "csv",
    protected: Protected = None,
) -> StreamingResponse:
    return await _stream(request, principal, settings, "visits", format, filters, protected)


@router.get(
    "/settlements",
    operation_id="exports:settlements",
    summary="Counts per settlement: decisions, reasons, needs, people",
    response_class=StreamingResponse,
    responses=FILE_RESPONSE,
    description="One row per settlement: households, visited, decisions, people (elderly, "
    "children, disabled), and households per reason and per need. In a protected summary "
    "any count from 1 to k-1 (k = 5 unless configured) is left empty, with enough others "
    "that it cannot be worked out from the row's total. " + PARTNER_PROTECTION,
)
async def settlement_summary(
    request: Request,
    principal: CurrentPrincipal,
    settings: SettingsDep,
    filters: ExportFilters,
    format: FormatQuery = "csv",
    protected: Protected = None,
) -> StreamingResponse:
    return await _stream(request, principal, settings, "settlements", format, filters, protected)
