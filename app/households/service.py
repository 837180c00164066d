"""Household rules: the canonical state as a fold of edits and visits, stored with its stamps.

The push path works on plain records (dicts of the folded columns, locked with
`lock_for_fold`) rather than ORM objects, and writes the changed ones back with one
statement: hundreds of households per batch go through here.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import date
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.conflicts import service as conflicts
from app.core.types import utcnow
from app.households import repository
from app.households.fold import (
    FieldStamp,
    FoldState,
    Observation,
    decode_stamps,
    encode_stamps,
    fold,
    observation_key,
    winners,
)
from app.households.models import Household, HouseholdEdit
from app.visits import service as visits

#: A household's folded columns plus id, version and field_stamps, as `lock_for_fold` reads them.
Record = dict[str, Any]

_TEXT_FIELDS = frozenset({"address", "head_name", "phone", "notes"})
_LIST_FIELDS = frozenset({"reasons", "needs"})

insert_new = repository.insert_new
insert_edits = repository.insert_edits
save_folded = repository.save_folded
serialize_writers = repository.serialize_writers


async def add_new(session: AsyncSession, households: Sequence[Household]) -> int:
    """Insert the households whose ids are not stored yet; returns how many were new."""
    return len(await repository.insert_new(session, [h.model_dump() for h in households]))


async def lock_for_fold(
    session: AsyncSession, ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, Record]:
    return {row["id"]: row for row in await repository.lock_for_fold(session, ids)}


def field_value(record: Mapping[str, Any], name: str) -> Any:
    """A folded field's current value, in the shape observations carry it."""
    if name == "settlement":
        return record["settlement_pcode"]
    if name == "location":
        if record["lat"] is None or record["lon"] is None:
            return None
        return {"lat": record["lat"], "lon": record["lon"], "accuracy_m": record["accuracy_m"]}
    return record[name]


def state_of(record: Mapping[str, Any]) -> FoldState:
    stamps = decode_stamps(record["field_stamps"])
    return FoldState(values={n: field_value(record, n) for n in stamps}, stamps=stamps)


def _write(record: Record, name: str, value: Any) -> None:
    """Copy one folded value into the record's columns."""
    if name == "settlement":
        record["settlement_pcode"] = value
    elif name == "location":
        location = value or {}
        record["lat"] = location.get("lat")
        record["lon"] = location.get("lon")
        record["accuracy_m"] = location.get("accuracy_m")
    elif name in _TEXT_FIELDS:
        record[name] = value or ""
    elif name in _LIST_FIELDS:
        record[name] = list(value or [])
    else:
        record[name] = value


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
    """Everything still in the fold for these households: their edits, their visits and
    the supervisors' conflict resolutions (timed when they were made)."""
    result = await visits.observations_for(session, household_ids)
    for edit in await repository.edits_for(session, household_ids):
        result[edit.household_id].append(edit_observation(edit))
    for resolved in await conflicts.resolutions_for(session, household_ids):
        values = dict(
            resolved.resolution.get("fields") or {resolved.field: resolved.resolution["value"]}
        )
        if isinstance(values.get("planned_departure"), str):
            values["planned_departure"] = date.fromisoformat(values["planned_departure"])
        result[resolved.household_id].append(
            Observation(
                key=observation_key(resolved.resolved_at, resolved.resolved_by, resolved.id),
                by=str(resolved.resolved_by),
                values=values,
            )
        )
    return result


async def refold(
    session: AsyncSession, household_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, Record]:
    """Lock these households and fold each again from everything still in its fold (after
    a review took a visit out, or a merge brought visits in); writes back the changed
    ones. Returns the households, as records, after the fold."""
    await serialize_writers(session, household_ids)
    locked = await lock_for_fold(session, household_ids)
    observations = await observations_for(session, set(locked))
    changed = [r for hid, r in locked.items() if apply(r, observations[hid], from_scratch=True)]
    await save_folded(session, changed)
    return locked


async def redirects(
    session: AsyncSession, ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, uuid.UUID]:
    """For each of these households that was merged away, the household that now stands
    for it (following merges of merges)."""
    direct: dict[uuid.UUID, uuid.UUID] = {}
    looked_up: set[uuid.UUID] = set()
    frontier = set(ids)
    while frontier:
        looked_up |= frontier
        found = await repository.merged_targets(session, frontier)
        direct.update(found)
        frontier = set(found.values()) - looked_up
    resolved = {}
    for source in set(ids) & set(direct):
        target, hops = direct[source], 0
        while target in direct and hops < len(direct):  # merges never form a cycle
            target, hops = direct[target], hops + 1
        resolved[source] = target
    return resolved


async def merged_from(
    session: AsyncSession, survivors: Collection[uuid.UUID]
) -> dict[uuid.UUID, set[uuid.UUID]]:
    """For each of these households, every household merged into it, directly or through
    merges of merges."""
    result: dict[uuid.UUID, set[uuid.UUID]] = {s: set() for s in survivors}
    owner = {s: s for s in survivors}
    frontier = set(survivors)
    while frontier:
        found = await repository.merged_into_any(session, frontier)
        frontier = set()
        for duplicate, target in found.items():
            if duplicate not in owner:
                owner[duplicate] = owner[target]
                result[owner[target]].add(duplicate)
                frontier.add(duplicate)
    return result


mark_merged = repository.mark_merged


def _apply_incremental(record: Record, observations: Sequence[Observation]) -> bool:
    """`apply` for observations added to the stored state: only the fields they win are
    read and written, straight on the record (the hot path of a push)."""
    stamps = decode_stamps(record["field_stamps"])
    won = winners(stamps, observations)
    if not won:
        return False
    changed = {
        name
        for name, observation in won.items()
        if name not in stamps or field_value(record, name) != observation.values[name]
    }
    version = record["version"] + 1 if changed else record["version"]
    new_stamps = dict(stamps)
    for name, observation in won.items():
        kept = stamps[name].version if name in stamps and name not in changed else version
        new_stamps[name] = FieldStamp(*observation.key, observation.by, kept)
        if name in changed:
            _write(record, name, observation.values[name])
    record["version"] = version
    record["field_stamps"] = encode_stamps(new_stamps)
    record["updated_at"] = utcnow()
    return True


def apply(
    record: Record,
    observations: Sequence[Observation],
    *,
    from_scratch: bool,
) -> bool:
    """Fold observations into the record; bump its version only if its state changed.

    `from_scratch` re-folds from nothing (the observations must then be all of them),
    as after a correction or a review took an observation out of the fold. Returns
    whether the record needs writing back (a value or a stamp changed).
    """
    if not from_scratch:
        return _apply_incremental(record, observations)
    current = state_of(record)
    after = fold(FoldState(), observations, version=record["version"] + 1)
    names = set(current.values) | set(after.values)
    changed = {
        n
        for n in names
        if (n in current.values) != (n in after.values)
        or current.values.get(n) != after.values.get(n)
    }
    # A field whose value did not change keeps the version it last changed at.
    stamps = {
        n: s._replace(version=current.stamps[n].version)
        if n in current.stamps and n not in changed
        else s
        for n, s in after.stamps.items()
    }
    stored = encode_stamps(stamps)
    if not changed and stored == record["field_stamps"]:
        return False
    if changed:
        record["version"] += 1
        for name in changed:
            _write(record, name, after.values.get(name))
    record["field_stamps"] = stored
    record["updated_at"] = utcnow()
    return True
