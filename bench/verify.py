"""Does the server's store agree with what simulated phones recorded and were told?

Run at the end of the fault tests and of the soak benchmark, once every phone has
synced (nothing pending). It reads the database directly and reports, in plain words,
every disagreement:

- **Nothing lost, nothing twice.** Every visit and household edit a phone recorded is
  stored once, in the batch the phone formed for it, with the phone's values, and folded;
  nothing else of those phones is stored.
- **No answer the store contradicts.** The answer each phone holds for a batch is the
  one the server journaled for it, byte for byte; its items are stored, and the household
  version it gave is not above the stored one.
- **The fold.** Each household's canonical state, value by value and with the same
  winning observation, is the pure fold (app/households/fold.py) of every visit and edit
  the phones recorded, timed as the answers said the server corrected them (the batch's
  clock offset and receive time, app/sync/clock.py).
- **Replicas.** Each phone's replica holds exactly the households of its settlements,
  as a field worker is sent them, in their canonical state.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlmodel import col

from app.households.fold import FoldState, Observation, decode_stamps, fold
from app.households.models import Household, HouseholdEdit
from app.households.schemas import HouseholdIn
from app.households.service import edit_observation, field_value
from app.sync.clock import ClockCorrection
from app.sync.models import SyncBatch
from app.visits.codes import SENSITIVE_REASONS
from app.visits.models import Visit
from app.visits.schemas import VisitIn
from app.visits.service import observation
from bench.device import Device

#: Item statuses that mean "stored" (docs/PROTOCOL.md, Push).
STORED = frozenset({"applied", "duplicate", "conflict", "pending"})
#: Problems listed in a report before "... and N more".
SHOWN = 40


@dataclass
class Verification:
    devices: int = 0
    visits_recorded: int = 0
    edits_recorded: int = 0
    visits_stored: int = 0
    edits_stored: int = 0
    households: int = 0
    #: Items recorded but not stored (or never answered).
    lost: list[str] = field(default_factory=list)
    #: Items stored more than once, or stored though never recorded.
    extra: list[str] = field(default_factory=list)
    #: Answers the store contradicts.
    contradicted: list[str] = field(default_factory=list)
    #: Households whose state is not the fold of what was recorded.
    fold: list[str] = field(default_factory=list)
    #: Replicas that differ from the server.
    replicas: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return [*self.lost, *self.extra, *self.contradicted, *self.fold, *self.replicas]

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        head = (
            f"{self.devices} phones recorded {self.visits_recorded} visits and "
            f"{self.edits_recorded} household edits; the store holds {self.visits_stored} "
            f"and {self.edits_stored} of them, {self.households} households; lost "
            f"{len(self.lost)}, extra {len(self.extra)}, contradicted answers "
            f"{len(self.contradicted)}, fold differences {len(self.fold)}, replica "
            f"differences {len(self.replicas)}"
        )
        problems = self.problems
        lines = [head, *problems[:SHOWN]]
        if len(problems) > SHOWN:
            lines.append(f"... and {len(problems) - SHOWN} more")
        return "\n".join(lines)


def _instant(value: str | datetime | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


@dataclass
class _Store:
    households: dict[uuid.UUID, dict[str, Any]]
    visits: dict[uuid.UUID, Visit]
    edits: list[HouseholdEdit]
    journal: dict[uuid.UUID, SyncBatch]


async def _read_store(engine: AsyncEngine, device_ids: list[uuid.UUID]) -> _Store:
    async with AsyncSession(engine) as session:
        households = {
            h.id: h.model_dump() for h in (await session.scalars(select(Household))).all()
        }
        visits = {
            v.id: v
            for v in await session.scalars(
                select(Visit).where(col(Visit.device_id).in_(device_ids))
            )
        }
        edits = list(
            await session.scalars(
                select(HouseholdEdit).where(col(HouseholdEdit.device_id).in_(device_ids))
            )
        )
        journal = {
            b.batch_id: b
            for b in await session.scalars(
                select(SyncBatch).where(col(SyncBatch.device_id).in_(device_ids))
            )
        }
    return _Store(households, visits, edits, journal)


def _correction(answer: dict[str, Any]) -> ClockCorrection:
    received_at = _instant(answer["received_at"])
    assert received_at is not None
    return ClockCorrection(
        offset=timedelta(seconds=answer["clock_offset_seconds"]), received_at=received_at
    )


def _same_visit(item: VisitIn, row: Visit) -> list[str]:
    want = {
        "household_id": item.household_id,
        "visited_at_device": item.visited_at,
        "outcome": item.outcome,
        "decision": item.decision,
        "reasons": list(item.reasons),
        "needs": list(item.needs),
        "planned_departure": item.planned_departure,
        "consent_to_share": item.consent_to_share,
    }
    return [
        f"{name}: recorded {value!r}, stored {getattr(row, name)!r}"
        for name, value in want.items()
        if getattr(row, name) != value
    ]


async def verify(
    engine: AsyncEngine, devices: Sequence[Device], *, check_replicas: bool = True
) -> Verification:
    """Compare the store with what the phones recorded and hold; see the module docstring."""
    report = Verification(devices=len(devices))
    store = await _read_store(engine, [d.device_id for d in devices])
    observations: dict[uuid.UUID, list[Observation]] = defaultdict(list)
    edits_by_key = {(e.device_id, e.household_id, e.observed_at_device): e for e in store.edits}
    if len(edits_by_key) != len(store.edits):
        report.extra.append("two stored edits share a device, household and device time")
    matched_edits: set[uuid.UUID] = set()
    recorded_households: set[uuid.UUID] = set()
    recorded_visits: set[uuid.UUID] = set()

    for device in devices:
        answers: dict[str, dict[str, Any]] = {}
        for batch in device.batches():
            batch_id = uuid.UUID(batch.batch_id)
            journaled = store.journal.get(batch_id)
            if batch.response is None:
                continue  # its items are reported as unanswered below
            answer = batch.answer
            assert answer is not None
            answers[batch.batch_id] = answer
            if journaled is None:
                report.contradicted.append(
                    f"{device.username}: batch {batch_id} was answered but is not journaled"
                )
            elif journaled.response_body.decode() != batch.response:
                report.contradicted.append(
                    f"{device.username}: batch {batch_id}: the answer held differs from the "
                    "journaled one"
                )
        formed = {uuid.UUID(b.batch_id) for b in device.batches()}
        for batch_id, journaled in store.journal.items():
            if journaled.device_id == device.device_id and batch_id not in formed:
                report.extra.append(f"{device.username}: batch {batch_id} was never formed")

        for recorded in device.recorded():
            item, result = recorded.item, recorded.result
            what = f"{device.username}: {recorded.kind} {item['id']}"
            if recorded.kind == "household":
                report.edits_recorded += 1
            else:
                report.visits_recorded += 1
            if result is None or recorded.batch_id is None:
                report.lost.append(f"{what} was never answered")
                continue
            if result["status"] not in STORED:
                report.lost.append(f"{what} was answered {result['status']}: {result['errors']}")
                continue
            batch_id = uuid.UUID(recorded.batch_id)
            correction = _correction(answers[recorded.batch_id])
            if recorded.kind == "visit":
                visit = VisitIn.model_validate(item)
                recorded_visits.add(visit.id)
                row = store.visits.get(visit.id)
                if row is None:
                    report.lost.append(f"{what} was answered {result['status']} but not stored")
                    continue
                differences = _same_visit(visit, row)
                if row.batch_id != batch_id:
                    differences.append(f"stored from batch {row.batch_id}, sent in {batch_id}")
                if row.fold_state != "folded":
                    differences.append(f"fold state {row.fold_state}")
                if differences:
                    report.contradicted.append(f"{what}: {'; '.join(differences)}")
                visited_at, _ = correction.correct(visit.visited_at)
                observations[visit.household_id].append(
                    observation(
                        {
                            "id": visit.id,
                            "device_id": device.device_id,
                            "recorded_by": "",
                            "visited_at": visited_at,
                            "outcome": visit.outcome,
                            "decision": visit.decision,
                            "reasons": visit.reasons,
                            "needs": visit.needs,
                            "planned_departure": visit.planned_departure,
                            "consent_to_share": visit.consent_to_share,
                        }
                    )
                )
                household_id = visit.household_id
            else:
                edit = HouseholdIn.model_validate(item)
                recorded_households.add(edit.id)
                stored_edit = edits_by_key.get((device.device_id, edit.id, edit.observed_at))
                if stored_edit is None:
                    report.lost.append(
                        f"{what} edit was answered {result['status']} but not stored"
                    )
                    continue
                matched_edits.add(stored_edit.id)
                fields = edit.observed_fields()
                if stored_edit.batch_id != batch_id or stored_edit.fields != fields:
                    report.contradicted.append(
                        f"{what}: stored edit {stored_edit.fields} from batch "
                        f"{stored_edit.batch_id}, recorded {fields} sent in {batch_id}"
                    )
                observed_at, _ = correction.correct(edit.observed_at)
                observations[edit.id].append(
                    edit_observation(
                        {
                            "id": stored_edit.id,
                            "device_id": device.device_id,
                            "recorded_by": "",
                            "observed_at": observed_at,
                            "fields": fields,
                        }
                    )
                )
                household_id = edit.id
            stored_household = store.households.get(household_id)
            version = result.get("version")
            if stored_household is None:
                report.contradicted.append(f"{what}: its household is not stored")
            elif version is not None and version > stored_household["version"]:
                report.contradicted.append(
                    f"{what}: answered version {version}, stored {stored_household['version']}"
                )

    for visit_id in set(store.visits) - recorded_visits:
        report.extra.append(f"visit {visit_id} is stored but no phone recorded it")
    for edit_row in store.edits:
        if edit_row.id not in matched_edits:
            report.extra.append(f"household edit {edit_row.id} is stored but was not recorded")
    report.visits_stored = len(recorded_visits & set(store.visits))
    report.edits_stored = len(matched_edits)
    report.households = len(store.households)

    _check_fold(report, store, observations)
    if check_replicas:
        for device in devices:
            _check_replica(report, store, device)
    return report


def _check_fold(
    report: Verification, store: _Store, observations: dict[uuid.UUID, list[Observation]]
) -> None:
    for household_id in sorted(set(store.households) | set(observations)):
        row = store.households.get(household_id)
        if row is None:
            report.lost.append(f"household {household_id} was recorded but is not stored")
            continue
        if household_id not in observations:
            report.extra.append(f"household {household_id} is stored but no phone recorded it")
            continue
        want: FoldState = fold(FoldState(), observations[household_id], version=1)
        stamps = decode_stamps(row["field_stamps"])
        for name in sorted(set(want.values) | set(stamps)):
            stored = field_value(row, name) if name in stamps else None
            expected = want.values.get(name)
            won_by = stamps[name].key if name in stamps else None
            wanted = want.stamps[name].key if name in want.stamps else None
            if stored != expected or won_by != wanted:
                report.fold.append(
                    f"household {household_id} {name}: stored {stored!r} (from {won_by}), "
                    f"fold of what was recorded {expected!r} (from {wanted})"
                )


def pulled_shape(row: dict[str, Any], *, supervisor: bool = False) -> dict[str, Any]:
    """A stored household as a phone is sent it (docs/PROTOCOL.md, Pull), times as instants."""
    departure: date | None = row["planned_departure"]
    reasons = list(row["reasons"])
    return {
        "id": str(row["id"]),
        "settlement": row["settlement_pcode"],
        "version": row["version"],
        "address": row["address"],
        "location": None
        if row["lat"] is None or row["lon"] is None
        else {"lat": row["lat"], "lon": row["lon"], "accuracy_m": row["accuracy_m"]},
        "head_name": row["head_name"],
        "phone": row["phone"],
        "members": row["members"],
        "members_elderly": row["members_elderly"],
        "members_children": row["members_children"],
        "members_disabled": row["members_disabled"],
        "notes": row["notes"],
        "decision": row["decision"],
        "reasons": reasons if supervisor else [r for r in reasons if r not in SENSITIVE_REASONS],
        "needs": list(row["needs"]),
        "planned_departure": None if departure is None else departure.isoformat(),
        "last_outcome": row["last_outcome"],
        "last_visit_at": row["last_visit_at"],
        "updated_at": row["updated_at"],
    }


def _as_held(pulled: dict[str, Any]) -> dict[str, Any]:
    """A replica's household with its times parsed, to compare with `pulled_shape`."""
    held = dict(pulled)
    held["last_visit_at"] = _instant(held.get("last_visit_at"))
    held["updated_at"] = _instant(held.get("updated_at"))
    return held


def _check_replica(report: Verification, store: _Store, device: Device) -> None:
    scope = set(device.settlements)
    want = {
        str(hid): pulled_shape(row)
        for hid, row in store.households.items()
        if row["merged_into"] is None and row["settlement_pcode"] in scope
    }
    held = {hid: _as_held(h) for hid, h in device.replica.items()}
    for hid in sorted(set(want) | set(held)):
        if hid not in held:
            report.replicas.append(f"{device.username}: household {hid} is missing")
        elif hid not in want:
            report.replicas.append(f"{device.username}: household {hid} should not be held")
        elif held[hid] != want[hid]:
            differences = ", ".join(
                f"{name} {held[hid].get(name)!r} (server {value!r})"
                for name, value in want[hid].items()
                if held[hid].get(name) != value
            )
            report.replicas.append(f"{device.username}: household {hid}: {differences}")
