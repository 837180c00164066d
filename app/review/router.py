"""Supervisors' calls: review (households, visits), conflicts, duplicate households.

One router, with a tag per route, because the paths interleave: `/households/duplicates`
(Households) must be matched before `/households/{household_id}` (Review).
"""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from app.auth.deps import Reviewer
from app.core.deps import SessionDep, SettingsDep
from app.core.openapi import errors
from app.core.text import NO_NUL, SETTLEMENT_PCODE, Instant
from app.review import service
from app.review.repository import HouseholdFilters, VisitFilters
from app.review.schemas import (
    ConflictOut,
    ConflictPage,
    DuplicatePair,
    HouseholdDetail,
    HouseholdPage,
    MergeIn,
    MergeOut,
    ResolutionIn,
    ReviewedVisit,
    ReviewIn,
    VisitPage,
)

router = APIRouter()

PCODE = "UA6308013001"
Limit = Annotated[int, Query(ge=1, le=500, description="At most this many in one page.")]
After = Annotated[
    str | None,
    Query(max_length=400, pattern=NO_NUL, description="The `next` of the previous page."),
]
Settlement = Annotated[
    str | None,
    Query(pattern=SETTLEMENT_PCODE, description="A settlement P-code.", examples=[PCODE]),
]
Decision = Literal["leave", "stay", "undecided", "none"]
#: The need codes (app/visits/codes.py; a test keeps the two lists equal).
Need = Literal[
    "transport",
    "accessible_transport",
    "medical_escort",
    "pet_or_livestock_transport",
    "accommodation",
    "cash",
    "documents",
    "information",
    "none",
]
VisitReviewState = Literal["unreviewed", "approved", "flagged", "rejected"]
HouseholdId = Annotated[uuid.UUID, Path(description="The household's id.")]
READ_ERRORS = errors(400, 401, 403, 422, 503)


@router.get(
    "/households/duplicates",
    tags=["Households"],
    operation_id="households:duplicates",
    summary="Suggest households registered twice in a settlement",
    response_model=list[DuplicatePair],
    responses=errors(401, 403, 422, 503),
    description="Two workers often register the same house while offline. This lists pairs "
    "of households in the settlement whose addresses are the same once case, punctuation and "
    "abbreviations are ignored (`вулиця Центральна 12` = `вул. Центральна, 12`), or whose "
    "locations are within `distance_m` metres. Each pair says why it was suggested. Check "
    "them, then merge the real duplicates with *Merge a duplicate household into this one*.",
)
async def duplicates(
    principal: Reviewer,
    session: SessionDep,
    settings: SettingsDep,
    settlement: Annotated[
        str,
        Query(pattern=SETTLEMENT_PCODE, description="A settlement P-code.", examples=[PCODE]),
    ],
    distance_m: Annotated[
        float | None,
        Query(
            ge=0,
            le=10_000,
            description="How close counts as the same place; default 25 m; under 1 m: off.",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many pairs.")] = 200,
) -> list[DuplicatePair]:
    distance = settings.duplicate_distance_m if distance_m is None else distance_m
    return await service.duplicates(session, principal, settlement, distance, limit)


@router.post(
    "/households/{household_id}/merge",
    tags=["Households"],
    operation_id="households:merge",
    summary="Merge a duplicate household into this one",
    response_model=MergeOut,
    responses=errors(400, 401, 403, 404, 409, 413, 415, 422, 503),
    description="This household stays; the duplicate's visits and conflicts move to it and "
    "its state is worked out again from all of them. Phones drop the duplicate on their next "
    "pull, and whatever a phone still sends about the duplicate lands here. Merging the same "
    "pair again changes nothing. If the two households' visits record different decisions "
    "by different workers within the conflict window, a conflict opens. A household cannot "
    "be merged into itself (422) or into one that was itself merged away (409).",
)
async def merge(
    household_id: HouseholdId,
    body: MergeIn,
    principal: Reviewer,
    session: SessionDep,
    settings: SettingsDep,
) -> MergeOut:
    window = timedelta(hours=settings.conflict_window_hours)
    return await service.merge(
        session, principal, household_id, body.duplicate_id, body.note, window
    )


@router.get(
    "/households",
    tags=["Review"],
    operation_id="review:list_households",
    summary="Find households in your settlements",
    response_model=HouseholdPage,
    responses=READ_ERRORS,
    description="Households in their current state, sorted by settlement, address and id. "
    "Combine the filters as you need, e.g. everyone leaving who needs transport: "
    "`decision=leave&need=transport`. For the next page pass `next` as `after`.",
)
async def list_households(
    principal: Reviewer,
    session: SessionDep,
    settlement: Settlement = None,
    decision: Annotated[
        Decision | None, Query(description="`none`: no decision recorded yet.")
    ] = None,
    need: Annotated[Need | None, Query(description="Has this need.")] = None,
    review_state: Annotated[
        VisitReviewState | None, Query(description="Has a visit in this review state.")
    ] = None,
    has_open_conflict: Annotated[bool | None, Query(description="Has an open conflict.")] = None,
    not_visited_since: Annotated[
        date | None, Query(description="Not visited since this day (or never).")
    ] = None,
    address: Annotated[
        str | None,
        Query(
            max_length=200,
            pattern=NO_NUL,
            description="Part of the address, any case.",
            examples=["Центральна"],
        ),
    ] = None,
    after: After = None,
    limit: Limit = 100,
) -> HouseholdPage:
    filters = HouseholdFilters(
        settlement=settlement,
        decision=decision,
        need=need,
        review_state=review_state,
        has_open_conflict=has_open_conflict,
        not_visited_since=not_visited_since,
        address=address,
    )
    return await service.list_households(session, principal, filters, after, limit)


@router.get(
    "/households/{household_id}",
    tags=["Review"],
    operation_id="review:get_household",
    summary="One household with its whole history",
    response_model=HouseholdDetail,
    responses=errors(401, 403, 404, 422, 503),
    description="The household's current state, every visit (who recorded it, from which "
    "phone, when, and whether it still counts), every profile edit, its open and resolved "
    "conflicts, and the households merged into it.",
)
async def get_household(
    household_id: HouseholdId, principal: Reviewer, session: SessionDep
) -> HouseholdDetail:
    return await service.household_detail(session, principal, household_id)


@router.get(
    "/visits",
    tags=["Review"],
    operation_id="review:list_visits",
    summary="Find visits in your settlements",
    response_model=VisitPage,
    responses=READ_ERRORS,
    description="Visits newest first. Filter by settlement, household, worker (username), "
    "review state, decision, or a time range (`visited_from` included, `visited_to` not).",
)
async def list_visits(
    principal: Reviewer,
    session: SessionDep,
    settlement: Settlement = None,
    household_id: Annotated[uuid.UUID | None, Query(description="One household.")] = None,
    recorded_by: Annotated[
        str | None, Query(max_length=64, pattern=NO_NUL, description="The worker's username.")
    ] = None,
    review_state: Annotated[VisitReviewState | None, Query()] = None,
    decision: Annotated[Literal["leave", "stay", "undecided"] | None, Query()] = None,
    visited_from: Annotated[Instant | None, Query(description="With a timezone.")] = None,
    visited_to: Annotated[Instant | None, Query(description="With a timezone.")] = None,
    after: After = None,
    limit: Limit = 100,
) -> VisitPage:
    filters = VisitFilters(
        settlement=settlement,
        household_id=household_id,
        recorded_by=recorded_by,
        review_state=review_state,
        decision=decision,
        visited_from=visited_from,
        visited_to=visited_to,
    )
    return await service.list_visits(session, principal, filters, after, limit)


@router.get(
    "/visits/pending",
    tags=["Review"],
    operation_id="review:list_pending_visits",
    summary="Visits waiting for a household that never arrived",
    response_model=VisitPage,
    responses=READ_ERRORS,
    description="A visit whose household the server has not received waits here and counts "
    "nowhere. It is folded as soon as the household arrives. A visit that waits for days "
    "usually means a phone that lost its household record: call the worker (`recorded_by`).",
)
async def list_pending_visits(
    principal: Reviewer, session: SessionDep, after: After = None, limit: Limit = 100
) -> VisitPage:
    return await service.list_visits(session, principal, VisitFilters(pending=True), after, limit)


@router.post(
    "/visits/{visit_id}/review",
    tags=["Review"],
    operation_id="review:review_visit",
    summary="Approve, flag or reject a visit",
    response_model=ReviewedVisit,
    responses=errors(400, 401, 403, 404, 413, 415, 422, 503),
    description="`approved`: checked and right. `flagged`: needs another look. `rejected`: "
    "wrong; it stops counting, the household's state is worked out again without it, and "
    "phones get the new state on their next pull. Setting another state on a rejected "
    "visit makes it count again. Your note is kept in the audit log.",
)
async def review_visit(
    visit_id: Annotated[uuid.UUID, Path(description="The visit's id.")],
    body: ReviewIn,
    principal: Reviewer,
    session: SessionDep,
) -> ReviewedVisit:
    return await service.review_visit(session, principal, visit_id, body.state, body.note)


@router.get(
    "/conflicts",
    tags=["Conflicts"],
    operation_id="conflicts:list",
    summary="Conflicts in your settlements, oldest first",
    response_model=ConflictPage,
    responses=READ_ERRORS,
    description="Open conflicts by default; `status=resolved` for settled ones. Each lists "
    "every candidate value with who recorded it and when, and the value the household "
    "holds now.",
)
async def list_conflicts(
    principal: Reviewer,
    session: SessionDep,
    status: Annotated[Literal["open", "resolved"] | None, Query()] = "open",
    settlement: Settlement = None,
    household_id: Annotated[uuid.UUID | None, Query(description="One household.")] = None,
    after: After = None,
    limit: Limit = 100,
) -> ConflictPage:
    return await service.list_conflicts(
        session,
        principal,
        status=status,
        settlement=settlement,
        household_id=household_id,
        after=after,
        limit=limit,
    )


@router.get(
    "/conflicts/{conflict_id}",
    tags=["Conflicts"],
    operation_id="conflicts:get",
    summary="One conflict with every candidate",
    response_model=ConflictOut,
    description="The conflict, the value the household holds now, and every candidate "
    "value with the worker who recorded it, the phone, and when.",
    responses=errors(401, 403, 404, 422, 503),
)
async def get_conflict(
    conflict_id: Annotated[uuid.UUID, Path(description="The conflict's id.")],
    principal: Reviewer,
    session: SessionDep,
) -> ConflictOut:
    return await service.conflict_detail(session, principal, conflict_id)


@router.post(
    "/conflicts/{conflict_id}/resolve",
    tags=["Conflicts"],
    operation_id="conflicts:resolve",
    summary="Resolve a conflict: choose a candidate or enter the value",
    response_model=ConflictOut,
    responses=errors(400, 401, 403, 404, 409, 413, 415, 422, 503),
    description="Send `candidate_id` to choose one of the candidates, or `value` to enter "
    "the right value, and a `note` saying why. The household takes the value now and phones "
    "get it on their next pull; a visit made after your decision still counts over it. Send "
    "the `household_version` you saw: if the household changed meanwhile you get 409 and "
    "can look again. A conflict already resolved is 409.",
)
async def resolve_conflict(
    conflict_id: Annotated[uuid.UUID, Path(description="The conflict's id.")],
    body: ResolutionIn,
    principal: Reviewer,
    session: SessionDep,
) -> ConflictOut:
    return await service.resolve_conflict(session, principal, conflict_id, body)
