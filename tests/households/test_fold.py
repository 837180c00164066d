"""The fold on its own: a maximum per field under a total order of observation keys.

Pure tests of app/households/fold.py (and of `apply`, which stores a fold in a household
row): the result must not depend on the order observations come in, on repeats, or on
folding in one go versus in parts.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from app.households.fold import (
    FieldStamp,
    FoldState,
    Observation,
    decode_stamps,
    fold,
    observation_key,
    time_key,
)
from app.households.models import Household
from app.households.repository import FOLDED_COLUMNS
from app.households.service import Record, apply

#: A few instants, so that exact ties in time are common.
BASE = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
TIMES = st.integers(min_value=0, max_value=4).map(lambda n: BASE + timedelta(minutes=n))
FIELDS = ("a", "b", "c", "d")
USERS = ("user-1", "user-2", "user-3")


def _values() -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(
        st.sampled_from(FIELDS), st.integers(min_value=0, max_value=3), min_size=1
    )


@st.composite
def observation_lists(draw: st.DrawFn, *, max_size: int = 12) -> list[Observation]:
    """Observations with distinct item ids, drawn from few devices and few instants."""
    devices = draw(st.lists(st.uuids(), min_size=1, max_size=3, unique=True))
    items = draw(st.lists(st.uuids(), max_size=max_size, unique=True))
    return [
        Observation(
            key=observation_key(draw(TIMES), draw(st.sampled_from(devices)), item),
            by=draw(st.sampled_from(USERS)),
            values=draw(_values()),
        )
        for item in items
    ]


def _winners(observations: Sequence[Observation]) -> dict[str, Observation]:
    """For each field, the observation with the greatest key that names it."""
    best: dict[str, Observation] = {}
    for observation in observations:
        for name in observation.values:
            if name not in best or observation.key > best[name].key:
                best[name] = observation
    return best


def _stamp_keys(state: FoldState) -> dict[str, tuple[tuple[str, str, str], str]]:
    return {name: (stamp.key, stamp.by) for name, stamp in state.stamps.items()}


@given(observation_lists(), st.data())
def test_fold_ignores_order_and_repeats(
    observations: list[Observation], data: st.DataObject
) -> None:
    reference = fold(FoldState(), observations, version=1)
    repeats = data.draw(st.lists(st.sampled_from(observations), max_size=6)) if observations else []
    shuffled = data.draw(st.permutations([*observations, *repeats]))
    again = fold(FoldState(), shuffled, version=1)
    assert again.values == reference.values
    assert _stamp_keys(again) == _stamp_keys(reference)


@given(observation_lists(), st.data())
def test_fold_in_parts_equals_fold_at_once(
    observations: list[Observation], data: st.DataObject
) -> None:
    split = data.draw(st.integers(min_value=0, max_value=len(observations)))
    first, second = observations[:split], observations[split:]
    at_once = fold(FoldState(), observations, version=1)
    in_parts = fold(fold(FoldState(), first, version=1), second, version=2)
    assert in_parts.values == at_once.values
    assert _stamp_keys(in_parts) == _stamp_keys(at_once)
    # Folding what is already folded changes nothing, not even a stamp's version.
    assert fold(in_parts, observations, version=3) == in_parts


@given(observation_lists())
def test_each_field_takes_the_value_with_the_greatest_key(
    observations: list[Observation],
) -> None:
    state = fold(FoldState(), observations, version=1)
    winners = _winners(observations)
    assert set(state.values) == set(winners)
    for name, winner in winners.items():
        assert state.values[name] == winner.values[name]
        assert state.stamps[name].key == winner.key
        assert state.stamps[name].by == winner.by


def _ids(*texts: str) -> list[uuid.UUID]:
    return [uuid.UUID(t) for t in texts]


def test_a_tie_in_time_goes_to_the_greater_device_id() -> None:
    low, high = _ids("10000000-0000-4000-8000-000000000000", "f0000000-0000-4000-8000-000000000000")
    item_low, item_high = _ids(
        "00000000-0000-4000-8000-00000000000a", "00000000-0000-4000-8000-00000000000b"
    )
    # The greater device wins even with the smaller item id.
    from_high = Observation(observation_key(BASE, high, item_low), "user-1", {"a": "high"})
    from_low = Observation(observation_key(BASE, low, item_high), "user-2", {"a": "low"})
    for order in ([from_high, from_low], [from_low, from_high]):
        assert fold(FoldState(), order, version=1).values == {"a": "high"}


def test_a_tie_in_time_and_device_goes_to_the_greater_item_id() -> None:
    (device,) = _ids("50000000-0000-4000-8000-000000000000")
    low, high = _ids("00000000-0000-4000-8000-00000000000a", "00000000-0000-4000-8000-00000000000b")
    first = Observation(observation_key(BASE, device, high), "user-1", {"a": "high"})
    second = Observation(observation_key(BASE, device, low), "user-1", {"a": "low"})
    for order in ([first, second], [second, first]):
        assert fold(FoldState(), order, version=1).values == {"a": "high"}


def test_a_later_time_wins_over_any_device_and_item() -> None:
    low, high = _ids("00000000-0000-4000-8000-000000000001", "ffffffff-ffff-4fff-bfff-ffffffffffff")
    later = Observation(observation_key(BASE + timedelta(microseconds=1), low, low), "u", {"a": 1})
    earlier = Observation(observation_key(BASE, high, high), "u", {"a": 2})
    for order in ([later, earlier], [earlier, later]):
        assert fold(FoldState(), order, version=1).values == {"a": 1}


OFFSETS = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
#: Instants to the microsecond, from 1900 to 2200.
INSTANTS = st.integers(min_value=-70 * 365 * 86_400, max_value=230 * 365 * 86_400).flatmap(
    lambda seconds: st.integers(min_value=0, max_value=999_999).map(
        lambda us: datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds, microseconds=us)
    )
)


@given(INSTANTS, INSTANTS, OFFSETS, OFFSETS)
def test_time_key_sorts_like_the_instant_whatever_the_offset(
    a: datetime, b: datetime, zone_a: timezone, zone_b: timezone
) -> None:
    key_a, key_b = time_key(a.astimezone(zone_a)), time_key(b.astimezone(zone_b))
    assert len(key_a) == len(key_b)
    assert (key_a < key_b) == (a < b)
    assert (key_a == key_b) == (a == b)


# --- apply: the fold stored in a household row -------------------------------------

#: Realistic values per folded field, as edits and visits carry them.
_FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "address": st.sampled_from(["", "вул. Синтетична, 1", "вул. Синтетична, 2"]),
    "head_name": st.sampled_from(["", "Особа А", "Особа Б"]),
    "members": st.none() | st.integers(min_value=0, max_value=4),
    "decision": st.sampled_from(["stay", "leave", "undecided"]),
    "reasons": st.lists(st.sampled_from(["no_transport", "attachment_to_home"]), unique=True),
    "needs": st.lists(st.sampled_from(["transport", "cash"]), unique=True),
    "planned_departure": st.none() | st.just(date(2026, 12, 1)),
    "last_outcome": st.sampled_from(["contacted", "not_home"]),
    "last_visit_at": st.sampled_from([BASE, BASE + timedelta(hours=1)]),
    "consent_to_share": st.booleans(),
}


@st.composite
def household_observations(draw: st.DrawFn) -> list[Observation]:
    devices = draw(st.lists(st.uuids(), min_size=1, max_size=3, unique=True))
    items = draw(st.lists(st.uuids(), max_size=10, unique=True))
    observations = []
    for item in items:
        names = draw(st.sets(st.sampled_from(sorted(_FIELD_VALUES)), min_size=1, max_size=4))
        values = {name: draw(_FIELD_VALUES[name]) for name in sorted(names)}
        key = observation_key(draw(TIMES), draw(st.sampled_from(devices)), item)
        observations.append(Observation(key, draw(st.sampled_from(USERS)), values))
    return observations


def _record() -> Record:
    """A new household as the push path folds it: its folded columns, version and stamps."""
    row = Household(id=uuid.UUID(int=1), settlement_pcode="UA6308013001", version=0)
    return {
        "id": row.id,
        "version": row.version,
        "field_stamps": {},
        **{name: getattr(row, name) for name in FOLDED_COLUMNS},
    }


def _stamps(record: Record) -> dict[str, FieldStamp]:
    return decode_stamps(record["field_stamps"])


_NONE = object()


def _folded(record: Record) -> dict[str, Any]:
    """The folded fields (those with a stamp) and their stored values."""
    return {name: record[name] for name in decode_stamps(record["field_stamps"])}


def _columns(record: Record) -> dict[str, Any]:
    return {name: record[name] for name in _FIELD_VALUES}


@given(household_observations(), st.data())
def test_apply_in_parts_stores_what_a_fold_from_scratch_stores(
    observations: list[Observation], data: st.DataObject
) -> None:
    from_scratch = _record()
    apply(from_scratch, observations, from_scratch=True)

    shuffled = data.draw(st.permutations(observations))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(shuffled)), max_size=3)))
    incremental = _record()
    changed_at: dict[str, int] = {}
    for start, end in zip([0, *cuts], [*cuts, len(shuffled)], strict=True):
        version, before = incremental["version"], _folded(incremental)
        written = apply(incremental, shuffled[start:end], from_scratch=False)
        after = _folded(incremental)
        moved = {
            n for n in before.keys() | after.keys() if before.get(n, _NONE) != after.get(n, _NONE)
        }
        # The version grows exactly when a value changed (a new stamp alone is no change).
        assert incremental["version"] == version + (1 if moved else 0)
        if moved:
            assert written
        changed_at.update(dict.fromkeys(moved, int(incremental["version"])))
        # Each field's stamp names the version at which its value last changed.
        assert {n: s.version for n, s in _stamps(incremental).items()} == changed_at

    assert _columns(incremental) == _columns(from_scratch)
    assert {n: s.key for n, s in _stamps(incremental).items()} == {
        n: s.key for n, s in _stamps(from_scratch).items()
    }
