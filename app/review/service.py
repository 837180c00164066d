"""Review rules: what a supervisor may see and do, and how each act changes the state.

Every act here is scoped to the caller's settlements (an admin's scope is everything),
re-folds the households it touches so phones get the result on their next pull, and
appends an audit event in the same transaction.

Acts are observations, so a later re-fold never undoes them (docs/PROTOCOL.md):
- a rejected visit leaves the fold;
- a conflict resolution is an observation timed when it was made: a visit made after
  it supersedes it, an older visit that arrives late does not;
- a merge moves the duplicate's visits to the survivor.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import unicodedata
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.auth.service import Principal
from app.conflicts import repository as conflict_store
from app.conflicts.models import Conflict
from app.conflicts.service import ConflictBook
from app.core.db import AnyRow
from app.core.errors import (
    BadRequest,
    FieldError,
    Invalid,
    NotFound,
    validation_field_errors,
)
from app.core.errors import Conflict as Clash
from app.core.types import utcnow
from app.households import service as households
from app.households.schemas import HouseholdIn
from app.review import repository
from app.review.repository import HouseholdFilters, VisitFilters
from app.review.schemas import (
    CandidateOut,
    ConflictOut,
    ConflictPage,
    DuplicatePair,
    HouseholdDetail,
    HouseholdPage,
    HouseholdSummary,
    MergeOut,
    ResolutionIn,
    ReviewedVisit,
    VisitOut,
    VisitPage,
)
from app.settlements import service as settlements
from app.visits import codes
from app.visits import service as visits
from app.visits.codes import DECISION_CODES


async def _scope(session: AsyncSession, principal: Principal) -> settlements.Scope:
    return await settlements.visible_pcodes(session, principal.user_id, principal.role)


def _page_token(values: Sequence[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([str(v) for v in values])).decode()


def _aware_time(text: str) -> datetime:
    at = datetime.fromisoformat(text)
    if at.tzinfo is None or not 1900 < at.astimezone(UTC).year < 2200:
        raise ValueError(text)
    return at


def _read_token(token: str | None, *parsers: Callable[[str], Any]) -> tuple[Any, ...] | None:
    """A page token back into its sort keys, each parsed as its column needs; anything
    else is a 400 naming `after`."""
    if token is None:
        return None
    try:
        values = orjson.loads(base64.urlsafe_b64decode(token.encode()))
        if not isinstance(values, list) or len(values) != len(parsers):
            raise ValueError(token)
        if not all(isinstance(v, str) and "\x00" not in v for v in values):
            raise ValueError(token)
        return tuple(parse(value) for parse, value in zip(parsers, values, strict=True))
    except (ValueError, TypeError, OverflowError, binascii.Error, orjson.JSONDecodeError):
        raise BadRequest(
            "`after` is not a page token from this list.",
            errors=[FieldError(field="after", code="invalid", message="is not a page token")],
        ) from None


# Households ---------------------------------------------------------------------------


async def list_households(
    session: AsyncSession,
    principal: Principal,
    filters: HouseholdFilters,
    after: str | None,
    limit: int,
) -> HouseholdPage:
    scope = await _scope(session, principal)
    if filters.settlement is not None:
        settlements.require_visible(scope, [filters.settlement])
    position = _read_token(after, str, str, uuid.UUID)
    rows = await repository.households(session, scope, filters, position, limit)
    items = [
        HouseholdSummary(
            id=r.id,
            settlement=r.settlement_pcode,
            address=r.address,
            head_name=r.head_name,
            members=r.members,
            decision=r.decision,
            reasons=r.reasons,
            needs=r.needs,
            last_outcome=r.last_outcome,
            last_visit_at=r.last_visit_at,
            open_conflicts=r.open_conflicts,
            version=r.version,
        )
        for r in rows
    ]
    last = rows[-1] if len(rows) == limit else None
    token = _page_token((last.settlement_pcode, last.address, last.id)) if last else None
    return HouseholdPage(items=items, next=token)


async def _visible_household(
    session: AsyncSession, principal: Principal, household_id: uuid.UUID
) -> Any:
    """The household, if it exists and is in the caller's settlements; else 404 (a
    household outside your settlements is not confirmed to exist)."""
    found = await repository.household(session, household_id)
    scope = await _scope(session, principal)
    if found is None or (scope is not None and found.settlement_pcode not in scope):
        raise NotFound("No household with this id in your settlements.")
    return found


def _visit_out(row: AnyRow) -> VisitOut:
    v = row._mapping
    return VisitOut(
        id=v["id"],
        household_id=v["household_id"],
        recorded_by=v["recorded_by_name"],
        device_id=v["device_id"],
        visited_at=v["visited_at"],
        visited_at_device=v["visited_at_device"],
        clock_corrected=v["clock_corrected"],
        received_at=v["received_at"],
        outcome=v["outcome"],
        decision=v["decision"],
        reasons=v["reasons"],
        reason_note=v["reason_note"],
        needs=v["needs"],
        people_present=v["people_present"],
        consent_to_share=v["consent_to_share"],
        notes=v["notes"],
        corrects=v["corrects"],
        fold_state=v["fold_state"],
        in_fold=v["review_state"] != "rejected" and not v["is_corrected"],
        review_state=v["review_state"],
        review_note=v["review_note"],
    )


async def household_detail(
    session: AsyncSession, principal: Principal, household_id: uuid.UUID
) -> HouseholdDetail:
    found = await _visible_household(session, principal, household_id)
    state = found.model_dump(exclude={"field_stamps", "feed_txid", "feed_seq"})
    edits = [
        {
            "id": e.id,
            "recorded_by": e.recorded_by,
            "device_id": e.device_id,
            "observed_at": e.observed_at,
            "observed_at_device": e.observed_at_device,
            "received_at": e.received_at,
            "base_version": e.base_version,
            "fields": e.fields,
        }
        for e in await repository.edits_of(session, household_id)
    ]
    return HouseholdDetail(
        household=state,
        visits=[_visit_out(v) for v in await repository.visits_of(session, household_id)],
        edits=edits,
        conflicts=await _conflicts_out(
            session, await conflict_store.of_households(session, [household_id])
        ),
        merged_from=await repository.merged_into(session, household_id),
    )


# Visits -------------------------------------------------------------------------------


async def list_visits(
    session: AsyncSession,
    principal: Principal,
    filters: VisitFilters,
    after: str | None,
    limit: int,
) -> VisitPage:
    scope = await _scope(session, principal)
    if filters.settlement is not None:
        settlements.require_visible(scope, [filters.settlement])
    position = _read_token(after, _aware_time, uuid.UUID)
    rows = await repository.visits(session, scope, filters, position, limit)
    last = rows[-1] if len(rows) == limit else None
    return VisitPage(
        items=[_visit_out(r) for r in rows],
        next=_page_token((last.visited_at.isoformat(), last.id)) if last else None,
    )


async def review_visit(
    session: AsyncSession,
    principal: Principal,
    visit_id: uuid.UUID,
    state: str,
    note: str,
) -> ReviewedVisit:
    """Set a visit's review state. Rejecting it (or taking a rejection back) folds its
    household again, so the state and version change and phones get them."""
    scope = await _scope(session, principal)
    row = await repository.visit(session, visit_id)
    locked: dict[uuid.UUID, Any] = {}
    if row is not None:
        # Lock the household first, then read the visit again: a merge may be moving it,
        # or its household arriving and folding it.
        household_id = row.household_id
        await households.serialize_writers(session, [household_id])
        locked = await households.lock_for_fold(session, [household_id])
        row = await repository.visit(session, visit_id)
        if row is not None and row.household_id != household_id:
            raise Clash("A merge moved this visit to another household just now; try again.")
    if row is None or (scope is not None and not await _visit_visible(session, scope, row)):
        raise NotFound("No visit with this id in your settlements.")
    before = {"review_state": row.review_state, "review_note": row.review_note}
    household_id = row.household_id
    # A pending visit's household has not arrived: it has no version.
    version_before = locked[household_id]["version"] if household_id in locked else None
    await repository.set_review(session, visit_id, state, note)
    version = version_before
    if row.fold_state == "folded" and (row.review_state == "rejected") != (state == "rejected"):
        version = (await households.refold(session, [household_id]))[household_id]["version"]
    await audit.record(
        session,
        action="visit.review",
        entity_type="visit",
        entity_id=visit_id,
        actor_id=principal.user_id,
        actor_username=principal.username,
        reason=note,
        before={**before, "household_version": version_before},
        after={"review_state": state, "review_note": note, "household_version": version},
    )
    updated = await repository.visit(session, visit_id)
    assert updated is not None
    return ReviewedVisit(visit=_visit_out(updated), household_version=version)


async def _visit_visible(session: AsyncSession, scope: frozenset[str], row: AnyRow) -> bool:
    found = await repository.household(session, row.household_id)
    if found is not None:
        return found.settlement_pcode in scope
    assigned = await settlements.assigned_pcodes(session, row.recorded_by)
    return bool(scope & set(assigned))


# Conflicts ----------------------------------------------------------------------------


async def _conflicts_out(session: AsyncSession, conflicts: Sequence[Conflict]) -> list[ConflictOut]:
    """Conflicts with their candidates, households and people, in a fixed number of queries."""
    candidates = defaultdict(list)
    for candidate in await conflict_store.candidates_of(session, [c.id for c in conflicts]):
        candidates[candidate.conflict_id].append(candidate)
    people = {c.resolved_by for c in conflicts if c.resolved_by is not None}
    people |= {x.recorded_by for group in candidates.values() for x in group}
    names = await repository.usernames(session, people)
    homes = await repository.households_by_id(session, {c.household_id for c in conflicts})
    out = []
    for conflict in conflicts:
        home = homes[conflict.household_id]
        out.append(
            ConflictOut(
                id=conflict.id,
                household_id=conflict.household_id,
                settlement=home.settlement_pcode,
                address=home.address,
                field=conflict.field,
                kind=conflict.kind,
                status=conflict.status,
                opened_at=conflict.opened_at,
                household_version=home.version,
                current_value=households.field_value(home.model_dump(), conflict.field),
                candidates=[
                    CandidateOut(
                        id=x.id,
                        item_id=x.item_id,
                        kind=x.kind,
                        value=x.value,
                        recorded_by=names.get(x.recorded_by, str(x.recorded_by)),
                        device_id=x.device_id,
                        recorded_at=x.recorded_at,
                    )
                    for x in candidates[conflict.id]
                ],
                resolved_at=conflict.resolved_at,
                resolved_by=names.get(conflict.resolved_by) if conflict.resolved_by else None,
                resolution=conflict.resolution,
                resolution_note=conflict.resolution_note,
            )
        )
    return out


async def list_conflicts(
    session: AsyncSession,
    principal: Principal,
    *,
    status: str | None,
    settlement: str | None,
    household_id: uuid.UUID | None,
    after: str | None,
    limit: int,
) -> ConflictPage:
    scope = await _scope(session, principal)
    if settlement is not None:
        settlements.require_visible(scope, [settlement])
    position = _read_token(after, _aware_time, uuid.UUID)
    found = await repository.conflicts(
        session,
        scope,
        status=status,
        settlement=settlement,
        household_id=household_id,
        after=position,
        limit=limit,
    )
    last = found[-1] if len(found) == limit else None
    return ConflictPage(
        items=await _conflicts_out(session, found),
        next=_page_token((last.opened_at.isoformat(), last.id)) if last else None,
    )


async def _visible_conflict(
    session: AsyncSession, principal: Principal, conflict_id: uuid.UUID
) -> Conflict:
    conflict = await conflict_store.get(session, conflict_id)
    scope = await _scope(session, principal)
    if conflict is not None:
        home = await repository.household(session, conflict.household_id)
        if home is not None and (scope is None or home.settlement_pcode in scope):
            return conflict
    raise NotFound("No conflict with this id in your settlements.")


async def conflict_detail(
    session: AsyncSession, principal: Principal, conflict_id: uuid.UUID
) -> ConflictOut:
    return (
        await _conflicts_out(session, [await _visible_conflict(session, principal, conflict_id)])
    )[0]


async def _value_for(
    session: AsyncSession, principal: Principal, conflict: Conflict, body: ResolutionIn
) -> tuple[Any, uuid.UUID | None]:
    """The value a resolution sets, checked as the field requires."""
    chose = body.candidate_id is not None
    entered = "value" in body.model_fields_set
    if chose == entered:
        raise Invalid(
            "Give either candidate_id (choose a candidate) or value (enter one), not both.",
            errors=[
                FieldError(
                    field="candidate_id" if chose else "value",
                    code="one_of",
                    message="give exactly one of candidate_id and value",
                )
            ],
        )
    if chose:
        for candidate in await conflict_store.candidates_of(session, [conflict.id]):
            if candidate.id == body.candidate_id:
                if conflict.field == "settlement":
                    scope = await _scope(session, principal)
                    settlements.require_visible(scope, [str(candidate.value)])
                return candidate.value, candidate.id
        raise Invalid(
            "That candidate is not one of this conflict's.",
            errors=[
                FieldError(
                    field="candidate_id",
                    code="unknown_candidate",
                    message="is not a candidate of this conflict",
                )
            ],
        )
    if conflict.field == "decision":
        if not isinstance(body.value, str) or body.value not in DECISION_CODES:
            raise Invalid(
                "Not a decision.",
                errors=[
                    FieldError(
                        field="value",
                        code="unknown_code",
                        message=f"must be one of {', '.join(sorted(DECISION_CODES))}",
                    )
                ],
            )
        return body.value, None
    try:
        checked = HouseholdIn.model_validate(
            {"id": conflict.household_id, "observed_at": utcnow(), conflict.field: body.value}
        )
    except ValidationError as exc:
        errors = [
            FieldError(field="value", code=e.code, message=e.message)
            for e in validation_field_errors(exc.errors())
        ]
        raise Invalid(f"Not a valid {conflict.field}.", errors=errors) from None
    value = checked.observed_fields()[conflict.field]
    if conflict.field == "settlement":
        if not await settlements.existing_pcodes(session, [str(value)]):
            raise NotFound(f"Unknown settlement P-code {value}.")
        settlements.require_visible(await _scope(session, principal), [str(value)])
    return value, None


async def resolve_conflict(
    session: AsyncSession, principal: Principal, conflict_id: uuid.UUID, body: ResolutionIn
) -> ConflictOut:
    """Settle a conflict with a candidate's value or an entered one. The value becomes an
    observation timed now: the household takes it, unless a later visit says otherwise."""
    conflict = await _visible_conflict(session, principal, conflict_id)
    household_id = conflict.household_id
    await households.serialize_writers(session, [household_id])
    record = (await households.lock_for_fold(session, [household_id]))[household_id]
    conflict = await _visible_conflict(session, principal, conflict_id)  # again, locked
    if conflict.household_id != household_id or record["merged_into"] is not None:
        raise Clash("A merge moved this conflict to another household just now; reload it.")
    if conflict.status != "open":
        raise Clash(
            f"This conflict was already resolved at {conflict.resolved_at:%Y-%m-%d %H:%M} UTC; "
            "reload it to see how."
        )
    if body.household_version is not None and body.household_version != record["version"]:
        raise Clash(
            f"The household changed since you looked (version {body.household_version}, now "
            f"{record['version']}). Reload the conflict and decide again."
        )
    value, candidate_id = await _value_for(session, principal, conflict, body)
    current = households.field_value(record, conflict.field)
    resolution = {
        "value": value,
        "candidate_id": str(candidate_id) if candidate_id else None,
        "fields": await _resolved_fields(session, conflict, record, value, candidate_id),
    }
    if not await repository.close_conflict(
        session, conflict_id, by=principal.user_id, resolution=resolution, note=body.note
    ):
        raise Clash("This conflict was resolved by someone else just now; reload it.")
    after = (await households.refold(session, [household_id]))[household_id]
    await audit.record(
        session,
        action="conflict.resolve",
        entity_type="conflict",
        entity_id=conflict_id,
        actor_id=principal.user_id,
        actor_username=principal.username,
        reason=body.note,
        before={
            "status": "open",
            "field": conflict.field,
            "value": current,
            "household_version": record["version"],
        },
        after={
            "status": "resolved",
            "field": conflict.field,
            "value": households.field_value(after, conflict.field),
            "candidate_id": resolution["candidate_id"],
            "household_version": after["version"],
        },
    )
    return await conflict_detail(session, principal, conflict_id)


async def _resolved_fields(
    session: AsyncSession,
    conflict: Conflict,
    record: Mapping[str, Any],
    value: Any,
    candidate_id: uuid.UUID | None,
) -> dict[str, Any]:
    """Every field a resolution sets. A decision comes with what goes with it: a chosen
    visit's reasons, needs, planned departure and consent; for an entered decision, the
    current reasons that fit it, and no planned departure unless it is to leave. Stored
    as JSON (dates as ISO text); the fold reads them back (households.observations_for).
    """
    if conflict.field != "decision":
        return {conflict.field: value}
    if candidate_id is not None:
        chosen = next(
            c
            for c in await conflict_store.candidates_of(session, [conflict.id])
            if c.id == candidate_id
        )
        visit = await repository.visit(session, chosen.item_id) if chosen.kind == "visit" else None
        if visit is not None and visit.outcome == "contacted":
            departure = visit.planned_departure
            return {
                "decision": visit.decision,
                "reasons": sorted(visit.reasons),
                "needs": sorted(visit.needs),
                "planned_departure": departure.isoformat() if departure else None,
                "consent_to_share": bool(visit.consent_to_share),
            }
    allowed = codes.reasons_for(value)
    departure = record["planned_departure"] if value == "leave" else None
    return {
        "decision": value,
        "reasons": [r for r in record["reasons"] or [] if r in allowed],
        "planned_departure": departure.isoformat() if departure else None,
    }


# Duplicate households -----------------------------------------------------------------

_ABBREVIATIONS = {
    "вулиця": "вул",
    "провулок": "пров",
    "проспект": "просп",
    "площа": "пл",
    "будинок": "буд",
    "квартира": "кв",
    "street": "вул",
    "st": "вул",
}


def normalised_address(address: str) -> str:
    """An address reduced to what two workers would both write: case, punctuation,
    spacing and the usual abbreviations do not count."""
    text = unicodedata.normalize("NFKC", address).casefold().replace("’", "'")
    words = re.findall(r"[\w']+", text)
    return " ".join(_ABBREVIATIONS.get(w, w) for w in words)


def _metres(a: AnyRow, b: AnyRow) -> float:
    """Distance on the earth's surface (haversine), in metres."""
    lat1, lon1, lat2, lon2 = map(math.radians, (a.lat, a.lon, b.lat, b.lon))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * 6_371_000 * math.asin(math.sqrt(h))


def duplicate_pairs(rows: Sequence[AnyRow], distance_m: float) -> list[DuplicatePair]:
    """Pairs of households with the same normalised address or locations within
    `distance_m`, each with why; sorted by the pair's ids."""
    reasons: dict[tuple[uuid.UUID, uuid.UUID], list[str]] = defaultdict(list)
    distances: dict[tuple[uuid.UUID, uuid.UUID], float] = {}
    by_address: dict[str, list[AnyRow]] = defaultdict(list)
    for row in rows:
        key = normalised_address(row.address)
        if key:
            by_address[key].append(row)
    for group in by_address.values():
        for i, a in enumerate(group):
            for b in group[i + 1 :]:
                reasons[_pair(a, b)].append("same_address")
    # Locations: a grid of cells one distance wide, so only neighbouring cells compare.
    located = [r for r in rows if r.lat is not None and r.lon is not None]
    if distance_m >= 1 and located:  # under a metre is no location check at all
        cell_lat = distance_m / 111_320
        # One cell width for all, at least `distance_m` wide even at the highest latitude.
        widest = max(abs(row.lat) for row in located)
        cell_lon = cell_lat / max(math.cos(math.radians(widest)), 0.01)
        cells: dict[tuple[int, int], list[AnyRow]] = defaultdict(list)
        for row in located:
            cells[(math.floor(row.lat / cell_lat), math.floor(row.lon / cell_lon))].append(row)
        for (y, x), members in cells.items():
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    for a in members:
                        for b in cells.get((y + dy, x + dx), []):
                            if a.id >= b.id:
                                continue
                            metres = _metres(a, b)
                            if metres <= distance_m and _pair(a, b) not in distances:
                                distances[_pair(a, b)] = metres
                                reasons[_pair(a, b)].append(f"within {metres:.0f} m")
    by_id = {row.id: row for row in rows}
    return [
        DuplicatePair(
            first=_brief(by_id[first]),
            second=_brief(by_id[second]),
            reasons=reasons[(first, second)],
            distance_m=round(distances[(first, second)], 1)
            if (first, second) in distances
            else None,
        )
        for first, second in sorted(reasons)
    ]


def _pair(a: AnyRow, b: AnyRow) -> tuple[uuid.UUID, uuid.UUID]:
    return (a.id, b.id) if a.id < b.id else (b.id, a.id)


def _brief(row: AnyRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "address": row.address,
        "head_name": row.head_name,
        "version": row.version,
        "created_at": row.created_at,
    }


async def duplicates(
    session: AsyncSession,
    principal: Principal,
    settlement: str,
    distance_m: float,
    limit: int,
) -> list[DuplicatePair]:
    settlements.require_visible(await _scope(session, principal), [settlement])
    rows = await repository.settlement_households(session, settlement)
    return duplicate_pairs(rows, distance_m)[:limit]


async def merge(
    session: AsyncSession,
    principal: Principal,
    survivor_id: uuid.UUID,
    duplicate_id: uuid.UUID,
    note: str,
    window: timedelta,
) -> MergeOut:
    """Fold a duplicate household into the survivor: its visits and conflicts move over,
    it leaves a tombstone naming the survivor on the pull feed, and later pushes about it
    land on the survivor. Doing it again changes nothing.

    Visits that now share a household are checked as a push checks them: different
    decisions from different workers within `window` open a conflict."""
    if survivor_id == duplicate_id:
        raise Invalid(
            "A household cannot be merged into itself.",
            errors=[
                FieldError(field="duplicate_id", code="same_household", message="is this household")
            ],
        )
    await _visible_household(session, principal, survivor_id)
    try:
        await _visible_household(session, principal, duplicate_id)
    except NotFound:
        raise NotFound("No household with duplicate_id in your settlements.") from None
    await households.serialize_writers(session, [survivor_id, duplicate_id])
    locked = await households.lock_for_fold(session, [survivor_id, duplicate_id])
    survivor, duplicate = locked[survivor_id], locked[duplicate_id]
    if duplicate["merged_into"] == survivor_id:
        return MergeOut(
            survivor_id=survivor_id,
            duplicate_id=duplicate_id,
            visits_moved=0,
            survivor_version=survivor["version"],
            already_merged=True,
        )
    if duplicate["merged_into"] is not None:
        raise Clash(f"That household was already merged into {duplicate['merged_into']}.")
    if survivor["merged_into"] is not None:
        raise Clash(
            f"This household was itself merged into {survivor['merged_into']}; merge into that one."
        )
    moved = await repository.move_visits(session, duplicate_id, survivor_id)
    await _move_conflicts(session, principal, duplicate_id, survivor_id)
    await _open_decision_conflicts(session, survivor_id, window, moved)
    await households.mark_merged(session, duplicate_id, survivor_id)
    after = (await households.refold(session, [survivor_id]))[survivor_id]
    await audit.record(
        session,
        action="household.merge",
        entity_type="household",
        entity_id=survivor_id,
        actor_id=principal.user_id,
        actor_username=principal.username,
        reason=note,
        before={
            "survivor_version": survivor["version"],
            "duplicate_id": str(duplicate_id),
            "duplicate_version": duplicate["version"],
            "duplicate_merged_into": None,
        },
        after={
            "survivor_version": after["version"],
            "duplicate_merged_into": str(survivor_id),
            "visits_moved": len(moved),
        },
    )
    return MergeOut(
        survivor_id=survivor_id,
        duplicate_id=duplicate_id,
        visits_moved=len(moved),
        survivor_version=after["version"],
        already_merged=False,
    )


async def _move_conflicts(
    session: AsyncSession, principal: Principal, source: uuid.UUID, target: uuid.UUID
) -> None:
    """The duplicate's open conflicts go to the survivor; one on a field where the
    survivor has an open conflict too gives it its candidates and is closed. Resolved
    ones stay with the duplicate: their values were about its own profile and visits,
    and moved over they would overwrite the survivor's (its edits stay behind too)."""
    theirs = await conflict_store.of_households(session, [source, target])
    open_on_target = {
        c.field: c.id for c in theirs if c.household_id == target and c.status == "open"
    }
    rehomed = []
    for conflict in theirs:
        if conflict.household_id != source or conflict.status != "open":
            continue
        joined = open_on_target.get(conflict.field)
        if joined is not None:
            await conflict_store.move_candidates(session, conflict.id, joined)
            await repository.close_conflict(
                session,
                conflict.id,
                by=principal.user_id,
                resolution={"merged_into_conflict": str(joined)},
                note="Household merged; its candidates moved to the survivor's conflict.",
            )
        else:
            rehomed.append(conflict.id)
    await conflict_store.rehome(session, rehomed, target)


async def _open_decision_conflicts(
    session: AsyncSession, household_id: uuid.UUID, window: timedelta, moved: set[uuid.UUID]
) -> None:
    """Open (or add to) the decision conflict of a merged household where a moved visit
    and one it already had, by different workers within the window, record different
    decisions. Pairs of the same side were compared (and maybe resolved) before."""
    contacted = await visits.contacted_between(
        session, [household_id], datetime(2000, 1, 1, tzinfo=UTC), utcnow() + timedelta(days=1)
    )
    book = ConflictBook()
    for visit in contacted:
        clashing = [
            other
            for other in contacted
            if (other.id in moved) != (visit.id in moved)
            and other.recorded_by != visit.recorded_by
            and other.decision != visit.decision
            and abs(other.visited_at - visit.visited_at) <= window
        ]
        if clashing:
            candidates = [
                {
                    "item_id": v.id,
                    "kind": "visit",
                    "value": v.decision,
                    "recorded_by": v.recorded_by,
                    "device_id": v.device_id,
                    "recorded_at": v.visited_at,
                }
                for v in (*clashing, visit)
            ]
            book.gather(household_id, "decision", "decision_disagreement", candidates)
    await book.save(session)
