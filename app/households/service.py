"""Household rules: the canonical state as a fold of edits and visits, stored with its stamps."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.types import utcnow
from app.households import repository
from app.households.fold import FieldStamp, FoldState, Observation, fold, observation_key
from app.households.models import Household, HouseholdEdit
from app.visits import service as visits

#: Folded fields stored in a column of the same name.
_PLAIN_FIELDS = (
    "address",
    "head_name",
    "phone",
    "members",
    "members_elderly",
    "members_children",
    "members_disabled",
    "notes",
    "decision",
    "reasons",
    "needs",
    "planned_departure",
    "last_outcome",
    "last_visit_at",
    "consent_to_share",
)
_TEXT_FIELDS = frozenset({"address", "head_name", "phone", "notes"})

existing_ids = repository.existing_ids
insert_new = repository.insert_new
insert_edits = repository.insert_edits
lock = repository.lock


async def add_new(session: AsyncSession, households: Sequence[Household]) -> int:
    """Insert the households whose ids are not stored yet; returns how many were new."""
    known = await repository.existing_ids(session, (h.id for h in households))
    new = [h for h in households if h.id not in known]
    await repository.add_all(session, new)
    return len(new)


async def count(session: AsyncSession) -> int:
    return await repository.count(session)


def field_value(household: Household, name: str) -> Any:
    """A folded field's current value, in the shape observations carry it."""
    if name == "settlement":
        return household.settlement_pcode
    if name == "location":
        if household.lat is None or household.lon is None:
            return None
        return {"lat": household.lat, "lon": household.lon, "accuracy_m": household.accuracy_m}
    return getattr(household, name)


def state_of(household: Household) -> FoldState:
    stamps = {name: FieldStamp.from_json(raw) for name, raw in household.field_stamps.items()}
    return FoldState(values={n: field_value(household, n) for n in stamps}, stamps=stamps)


def _write_state(household: Household, state: FoldState, names: Collection[str]) -> None:
    """Copy the named fields' folded values into the household's columns."""
    for name in names:
        value = state.values.get(name)
        if name == "settlement":
            household.settlement_pcode = str(value)
        elif name == "location":
            location = value or {}
            household.lat = location.get("lat")
            household.lon = location.get("lon")
            household.accuracy_m = location.get("accuracy_m")
        elif name in _TEXT_FIELDS:
            setattr(household, name, value or "")
        elif name in ("reasons", "needs"):
            setattr(household, name, list(value or []))
        else:
            setattr(household, name, value)


def edit_observation(edit: HouseholdEdit | Mapping[str, Any]) -> Observation:
    e = edit.model_dump() if isinstance(edit, HouseholdEdit) else edit
    return Observation(
        key=observation_key(e["observed_at"], e["device_id"], e["id"]),
        by=str(e["recorded_by"]),
        values=dict(e["fields"]),
    )


async def observations_for(
    session: AsyncSession, household_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, list[Observation]]:
    """Everything still in the fold for these households: their edits and visits."""
    result = await visits.observations_for(session, household_ids)
    for edit in await repository.edits_for(session, household_ids):
        result[edit.household_id].append(edit_observation(edit))
    return result


def apply(household: Household, observations: Sequence[Observation], *, from_scratch: bool) -> bool:
    """Fold observations into the household; bump its version only if its state changed.

    `from_scratch` re-folds from nothing (the observations must then be all of them),
    as after a correction or a review took an observation out of the fold.
    """
    current = state_of(household)
    after = fold(
        FoldState() if from_scratch else current, observations, version=household.version + 1
    )
    names = set(current.values) | set(after.values)
    changed = {
        n
        for n in names
        if (n in current.values) != (n in after.values)
        or current.values.get(n) != after.values.get(n)
    }
    # A field whose value did not change keeps the version it last changed at.
    stamps = {
        n: FieldStamp(s.key, s.by, current.stamps[n].version)
        if n in current.stamps and n not in changed
        else s
        for n, s in after.stamps.items()
    }
    if changed:
        household.version += 1
        household.updated_at = utcnow()
        _write_state(household, FoldState(after.values, stamps), changed)
    stored = {n: st.to_json() for n, st in sorted(stamps.items())}
    if stored != household.field_stamps:
        household.field_stamps = stored
    return bool(changed)
