"""The fold: observations in, canonical household state out. Pure: no I/O, no clock.

Every observation (a household edit, a visit, later a supervisor's resolution)
carries a key: its corrected time, then the device id, then the item id. For each
field the observation with the greatest key wins. Taking a maximum under a total
order is commutative, associative and idempotent, so the state is the same
whatever order observations arrive in and however often they repeat, and folding
new observations into a stored state equals folding everything from scratch.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, NamedTuple

#: (corrected time as fixed-width UTC text, device id, item id): compared as a tuple.
ObservationKey = tuple[str, str, str]

#: State fields that a contacted visit sets; every visit also sets the last_* fields.
CONTACT_FIELDS = ("decision", "reasons", "needs", "planned_departure", "consent_to_share")
VISIT_FIELDS = ("last_outcome", "last_visit_at", *CONTACT_FIELDS)


def time_key(at: datetime) -> str:
    """Fixed-width UTC text that sorts like the instant it names (years padded to 4 digits)."""
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


def observation_key(at: datetime, device_id: uuid.UUID, item_id: uuid.UUID | str) -> ObservationKey:
    return (time_key(at), str(device_id), str(item_id))


@dataclass(frozen=True, slots=True)
class Observation:
    """Values for some fields, seen at `key` by user `by`."""

    key: ObservationKey
    by: str
    values: Mapping[str, Any]


class FieldStamp(NamedTuple):
    """Which observation a field's current value came from, and the version it changed at.

    Stored with `encode_stamps`: the fields of a household mostly share a handful of
    observations (one visit sets all the visit fields), so each is written once.
    """

    time: str
    device: str
    item: str
    by: str
    version: int

    @property
    def key(self) -> ObservationKey:
        return (self.time, self.device, self.item)


def encode_stamps(stamps: Mapping[str, FieldStamp]) -> dict[str, Any]:
    """`{"o": [[time, device, item, by], ...], "f": {field: [observation index, version]}}`."""
    observations: dict[tuple[str, str, str, str], int] = {}
    fields: dict[str, list[int]] = {}
    for name in sorted(stamps):
        stamp = stamps[name]
        index = observations.setdefault(stamp[:4], len(observations))
        fields[name] = [index, stamp.version]
    return {"o": [list(head) for head in observations], "f": fields}


def decode_stamps(raw: Mapping[str, Any]) -> dict[str, FieldStamp]:
    if not raw:
        return {}
    heads = raw["o"]
    stamps = {}
    for name, (index, version) in raw["f"].items():
        time, device, item, by = heads[index]
        stamps[name] = FieldStamp(time, device, item, by, version)
    return stamps


@dataclass(frozen=True, slots=True)
class FoldState:
    values: Mapping[str, Any] = field(default_factory=dict)
    stamps: Mapping[str, FieldStamp] = field(default_factory=dict)


def winners(
    stamped: Mapping[str, Sequence[Any]], observations: Iterable[Observation]
) -> dict[str, Observation]:
    """For each field, the observation that beats the one its stamp names, if any.

    `stamped` maps a field to its stamp (a FieldStamp or its stored list form, whose
    first three items are the key).
    """
    won: dict[str, Observation] = {}
    for observation in observations:
        key = observation.key
        for name in observation.values:
            best = won.get(name)
            if best is not None:
                if key <= best.key:
                    continue
            else:
                stamp = stamped.get(name)
                if stamp is not None and key <= (stamp[0], stamp[1], stamp[2]):
                    continue
            won[name] = observation
    return won


def fold(state: FoldState, observations: Iterable[Observation], *, version: int) -> FoldState:
    """Fold observations into `state`. A field that takes a new value is stamped `version`."""
    values = dict(state.values)
    stamps = dict(state.stamps)
    for name, observation in winners(state.stamps, observations).items():
        value = observation.values[name]
        current = state.stamps.get(name)
        changed = name not in values or values[name] != value
        values[name] = value
        stamps[name] = FieldStamp(
            *observation.key,
            observation.by,
            version if changed or current is None else current.version,
        )
    return FoldState(values=values, stamps=stamps)


def visit_values(
    *,
    outcome: str,
    visited_at: datetime,
    decision: str | None,
    reasons: list[str],
    needs: list[str],
    planned_departure: date | None,
    consent_to_share: bool,
) -> dict[str, Any]:
    """What a visit says about its household's state."""
    values: dict[str, Any] = {"last_outcome": outcome, "last_visit_at": visited_at}
    if outcome == "contacted":
        values.update(
            decision=decision,
            reasons=sorted(reasons),
            needs=sorted(needs),
            planned_departure=planned_departure,
            consent_to_share=consent_to_share,
        )
    return values
