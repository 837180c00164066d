"""Push: one batch in, one result per item out, journaled so a retry gets the same answer.

The steps follow docs/PROTOCOL.md: authenticate the device, enforce the limits,
claim the batch id in the journal, correct the clock, validate each item on its
own, store households then visits in bulk, fold, open conflicts, and store the
response in the same transaction as everything else. The request's transaction
commits before the response is sent (app/core/db.py), so an answered item is a
stored item.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import orjson
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import service as auth
from app.auth.service import Principal
from app.conflicts.service import ConflictBook, ConflictKey
from app.core import metrics
from app.core.config import Settings
from app.core.errors import (
    Conflict,
    DomainError,
    FieldError,
    Forbidden,
    Invalid,
    PayloadTooLarge,
    RetryLater,
    validation_field_errors,
)
from app.households import service as households
from app.households.fold import FoldState, Observation
from app.households.schemas import HouseholdIn
from app.households.service import Record
from app.settlements import service as settlements
from app.sync import repository
from app.sync.clock import EARLIEST, ClockCorrection
from app.sync.schemas import PushEnvelope
from app.visits import service as visits
from app.visits.schemas import VisitIn, visit_rule_errors

#: The stored columns that hold what the phone sent (device times, not corrected ones):
#: the same visit sent again hashes the same.
VISIT_CONTENT = (
    "id", "household_id", "visited_at_device", "outcome", "decision", "reasons",
    "reason_note", "leave_mode", "signed_refusal", "people_present", "needs",
    "planned_departure", "destination", "consent_to_share", "lat", "lon", "accuracy_m",
    "notes", "corrects",
)  # fmt: skip
ItemT = TypeVar("ItemT", HouseholdIn, VisitIn)
EDIT_NAMESPACE = uuid.UUID("1f0c7a52-93d4-4b8e-a3f2-6a1d0e5c9b71")


def _canonical_json(value: Any) -> bytes:
    """Sorted-key JSON. orjson is fast but refuses lone surrogates; json takes the rest."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _sha256(value: Any) -> str:
    return hashlib.sha256(_canonical_json(value)).hexdigest()


def parse_document(body: bytes) -> dict[str, Any]:
    """The body as a JSON object; anything else is a 422 naming the problem."""
    try:
        document = json.loads(body)
    except RecursionError:
        raise Invalid("The body nests too deeply to be a batch.") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, oversized integers
        raise Invalid(f"The body is not valid JSON: {exc}.") from None
    if not isinstance(document, dict):
        raise Invalid("The body must be a JSON object with batch_id, device_id and sent_at.")
    return document


IDENTITY_KEYS = ("batch_id", "device_id", "households", "visits")


def batch_identity(document: dict[str, Any]) -> str:
    """What makes two sends the same batch: its id, device and items. `sent_at` (which a
    retry may renew), `app_version` (the app may update between a send and its retry)
    and keys unknown to this server are not part of it."""
    try:
        return _sha256({k: document.get(k) for k in IDENTITY_KEYS})
    except RecursionError:  # parsed just within the parser's reach, too deep to write out
        raise Invalid("The body nests too deeply to be a batch.") from None


@dataclass
class _Edit:
    position: int
    prefix: str
    data: HouseholdIn
    row: dict[str, Any]


@dataclass
class _Visit:
    position: int
    prefix: str
    data: VisitIn
    row: dict[str, Any]


@dataclass
class _Batch:
    """The working state of one push."""

    principal: Principal
    device_id: uuid.UUID
    batch_id: uuid.UUID
    clock: ClockCorrection
    received_at: datetime
    #: One result per item, in request order, shaped as `ItemResult` (plain dicts: a
    #: batch makes hundreds of them).
    results: list[dict[str, Any]] = field(default_factory=list)
    #: The household each readable item is about, by result position.
    household_of: dict[int, uuid.UUID] = field(default_factory=dict)
    edits: list[_Edit] = field(default_factory=list)
    visits: list[_Visit] = field(default_factory=list)
    #: New visits of this batch that a stored visit corrects: they stay out of the fold.
    corrected: set[uuid.UUID] = field(default_factory=set)

    def reject(self, position: int, errors: list[FieldError]) -> None:
        result = self.results[position]
        result["status"] = "rejected"
        result["errors"] = [e.model_dump() for e in errors]


def _item_errors(exc: ValidationError, prefix: str) -> list[FieldError]:
    return [
        FieldError(
            field=f"{prefix}.{e.field}" if e.field else prefix, code=e.code, message=e.message
        )
        for e in validation_field_errors(exc.errors())
    ]


def _result(kind: str) -> dict[str, Any]:
    return {
        "kind": kind,
        "id": "",
        "status": "applied",
        "version": None,
        "conflicts": [],
        "errors": [],
    }


def _item_id(raw: Any) -> str:
    """The id of an item that failed validation, echoed only when it is a UUID."""
    value = raw.get("id") if isinstance(raw, dict) else None
    try:
        return str(uuid.UUID(value)) if isinstance(value, str) else ""
    except ValueError:
        return ""


def _start_item(
    batch: _Batch, kind: str, model: type[ItemT], raw: Any, prefix: str
) -> tuple[int, ItemT | None]:
    """Add the item's result (applied until shown otherwise) and validate it; a failed
    item is rejected with its errors and `None` comes back."""
    position = len(batch.results)
    batch.results.append(_result(kind))
    try:
        data = model.model_validate(raw)
    except ValidationError as exc:
        batch.results[position]["id"] = _item_id(raw)
        batch.reject(position, _item_errors(exc, prefix))
        return position, None
    batch.results[position]["id"] = str(data.id)
    return position, data


def _corrected(
    batch: _Batch, device_time: datetime, field_path: str
) -> tuple[datetime, bool] | FieldError:
    try:
        return batch.clock.correct(device_time)
    except OverflowError:
        return FieldError(
            field=field_path,
            code="out_of_range",
            message="is before 2000-01-01 even after correcting the phone's clock",
        )


def _read_households(batch: _Batch, raw_items: list[Any]) -> None:
    for i, raw in enumerate(raw_items):
        prefix = f"households.{i}"
        position, data = _start_item(batch, "household", HouseholdIn, raw, prefix)
        if data is None:
            continue
        batch.household_of[position] = data.id
        corrected = _corrected(batch, data.observed_at, f"{prefix}.observed_at")
        if isinstance(corrected, FieldError):
            batch.reject(position, [corrected])
            continue
        observed_at, clamped = corrected
        values = data.observed_fields()
        content_hash = _sha256(
            {
                "household": str(data.id),
                "device": str(batch.device_id),
                "observed_at": data.observed_at.isoformat(),
                "base_version": data.base_version,
                "fields": values,
            }
        )
        row = {
            "id": uuid.uuid5(EDIT_NAMESPACE, content_hash),
            "household_id": data.id,
            "content_hash": content_hash,
            "device_id": batch.device_id,
            "recorded_by": batch.principal.user_id,
            "batch_id": batch.batch_id,
            "observed_at_device": data.observed_at,
            "observed_at": observed_at,
            "future_clamped": clamped,
            "base_version": data.base_version,
            "fields": values,
            "received_at": batch.received_at,
        }
        batch.edits.append(_Edit(position, prefix, data, row))


def _read_visits(batch: _Batch, raw_items: list[Any]) -> None:
    for i, raw in enumerate(raw_items):
        prefix = f"visits.{i}"
        position, data = _start_item(batch, "visit", VisitIn, raw, prefix)
        if data is None:
            continue
        batch.household_of[position] = data.household_id
        errors = visit_rule_errors(data, prefix)
        corrected = _corrected(batch, data.visited_at, f"{prefix}.visited_at")
        if isinstance(corrected, FieldError):
            errors.append(corrected)
        if errors:
            batch.reject(position, errors)
            continue
        visited_at, clamped = corrected
        location = data.location
        row = {
            "id": data.id,
            "household_id": data.household_id,
            "device_id": batch.device_id,
            "recorded_by": batch.principal.user_id,
            "batch_id": batch.batch_id,
            "visited_at_device": data.visited_at,
            "visited_at": visited_at,
            "clock_corrected": batch.clock.applied,
            "future_clamped": clamped,
            "outcome": data.outcome,
            "decision": data.decision,
            "reasons": list(data.reasons),
            "reason_note": data.reason_note,
            "leave_mode": data.leave_mode,
            "signed_refusal": data.signed_refusal,
            "people_present": data.people_present,
            "needs": list(data.needs),
            "planned_departure": data.planned_departure,
            "destination": data.destination,
            "consent_to_share": data.consent_to_share,
            "lat": location.lat if location else None,
            "lon": location.lon if location else None,
            "accuracy_m": location.accuracy_m if location else None,
            "notes": data.notes,
            "corrects": data.corrects,
            "content_hash": "",
            "fold_state": "pending",
            "review_state": "unreviewed",
            "review_note": "",
            "received_at": batch.received_at,
        }
        row["content_hash"] = _sha256({k: row[k] for k in VISIT_CONTENT})
        batch.visits.append(_Visit(position, prefix, data, row))


async def _reject_unknown_settlements(session: AsyncSession, batch: _Batch) -> None:
    named = {e.data.settlement for e in batch.edits if e.data.settlement is not None}
    unknown = named - await settlements.existing_pcodes(session, named)
    if not unknown:
        return
    kept = []
    for edit in batch.edits:
        if edit.data.settlement in unknown:
            batch.reject(
                edit.position,
                [
                    FieldError(
                        field=f"{edit.prefix}.settlement",
                        code="unknown_code",
                        message=f"'{edit.data.settlement}' is not a known settlement P-code",
                    )
                ],
            )
        else:
            kept.append(edit)
    batch.edits = kept


async def _follow_merges(session: AsyncSession, batch: _Batch) -> None:
    """Items about a household a supervisor merged into another land on the survivor.

    An edit made on the merged-away copy loses its `base_version`: that counted the
    other household's versions, so comparing it with the survivor's would flag
    conflicts that are not there.
    """
    ids = {e.data.id for e in batch.edits} | {v.data.household_id for v in batch.visits}
    survivor_of = await households.redirects(session, ids)
    if not survivor_of:
        return
    for edit in batch.edits:
        if edit.data.id in survivor_of:
            target = survivor_of[edit.data.id]
            edit.data = edit.data.model_copy(update={"id": target, "base_version": None})
            edit.row["household_id"] = target
            edit.row["base_version"] = None
            batch.household_of[edit.position] = target
    for item in batch.visits:
        if item.data.household_id in survivor_of:
            target = survivor_of[item.data.household_id]
            item.data = item.data.model_copy(update={"household_id": target})
            item.row["household_id"] = target
            batch.household_of[item.position] = target


async def _store_households(
    session: AsyncSession, batch: _Batch
) -> tuple[dict[uuid.UUID, Record], set[uuid.UUID], dict[uuid.UUID, FoldState]]:
    """Create new households, lock every touched one, and store the edits.

    Returns the locked households, the ids created by this batch, and each
    pre-existing household's state before the batch (for stale-edit conflicts).
    """
    touched = {e.data.id for e in batch.edits} | {v.data.household_id for v in batch.visits}
    await households.serialize_writers(session, touched)
    new_rows: dict[uuid.UUID, dict[str, Any]] = {}
    for edit in batch.edits:
        hid = edit.data.id
        if hid not in new_rows and edit.data.settlement is not None:
            new_rows[hid] = {
                "id": hid,
                "settlement_pcode": edit.data.settlement,
                "created_by": batch.principal.user_id,
                "version": 0,
                "reasons": [],
                "needs": [],
                "review": {},
                "field_stamps": {},
                "address": "",
                "head_name": "",
                "phone": "",
                "notes": "",
                "created_at": batch.received_at,
                "updated_at": batch.received_at,
            }
    # Households already stored are skipped by the insert (ON CONFLICT DO NOTHING).
    created = await households.insert_new(session, list(new_rows.values()))
    locked = await households.lock_for_fold(session, touched)
    if any(record["merged_into"] is not None for record in locked.values()):
        # Merged after _follow_merges looked: nothing is stored; the phone's retry lands
        # on the survivor.
        raise RetryLater("A household in this batch was merged just now; send it again.")
    stale_checked = {e.data.id for e in batch.edits if e.data.base_version is not None}
    before = {
        hid: households.state_of(locked[hid])
        for hid in stale_checked
        if hid in locked and hid not in created
    }

    storable = []
    for edit in batch.edits:
        if edit.data.id in locked:
            storable.append(edit)
        else:
            batch.reject(
                edit.position,
                [
                    FieldError(
                        field=f"{edit.prefix}.settlement",
                        code="unknown_household",
                        message="this household is not known to the server; "
                        "a new household must name its settlement",
                    )
                ],
            )
    unique: dict[str, _Edit] = {}
    for edit in storable:
        if edit.row["content_hash"] in unique:  # the same edit twice in this batch
            batch.results[edit.position]["status"] = "duplicate"
        else:
            unique[edit.row["content_hash"]] = edit
    inserted = await households.insert_edits(session, [e.row for e in unique.values()])
    batch.edits = []
    for edit in unique.values():
        if edit.row["id"] in inserted:
            batch.edits.append(edit)
        else:
            batch.results[edit.position]["status"] = "duplicate"
    return locked, created, before


async def _store_visits(
    session: AsyncSession, batch: _Batch, locked: dict[uuid.UUID, Record]
) -> None:
    """Insert new visits; classify resends as duplicate or, if changed, immutable."""
    targets = {v.data.corrects for v in batch.visits if v.data.corrects is not None}
    household_in_batch = {v.data.id: v.data.household_id for v in batch.visits}
    stored, batch.corrected = await visits.stored_and_corrected(
        session, set(household_in_batch) | targets, household_in_batch
    )
    first: dict[uuid.UUID, _Visit] = {}
    fresh: list[_Visit] = []
    resent_elsewhere = await _resent_after_merge(session, batch, stored)
    for item in batch.visits:
        vid = item.data.id
        earlier = stored[vid].content_hash if vid in stored else None
        if earlier is None and vid in first:
            earlier = first[vid].row["content_hash"]
        if earlier is not None:
            if earlier == item.row["content_hash"] or vid in resent_elsewhere:
                batch.results[item.position]["status"] = "duplicate"
            else:
                batch.reject(item.position, [_immutable(item)])
            continue
        target = item.data.corrects
        if target is not None:
            known = stored.get(target)
            target_household = known.household_id if known else household_in_batch.get(target)
            # Only visits already accepted count: the first of a cycle goes in.
            accepted = first.get(target)
            target_corrects = known.corrects if known else accepted and accepted.data.corrects
            error = None
            if target_household not in (None, item.data.household_id):
                error = FieldError(
                    field=f"{item.prefix}.corrects",
                    code="other_household",
                    message="names a visit of another household",
                )
            elif target_corrects == vid:
                error = FieldError(
                    field=f"{item.prefix}.corrects",
                    code="invalid",
                    message="names a visit that corrects this one; two visits cannot "
                    "correct each other",
                )
            if error is not None:
                batch.reject(item.position, [error])
                continue
        first[vid] = item
        item.row["fold_state"] = "folded" if item.data.household_id in locked else "pending"
        fresh.append(item)
    inserted = await visits.insert_new(session, [v.row for v in fresh])
    raced = [v for v in fresh if v.data.id not in inserted]
    # Stored by a concurrent batch between the look-up and the insert: classify again.
    again = (await visits.stored_and_corrected(session, {v.data.id for v in raced}, {}))[0]
    for item in raced:
        stored_again = again.get(item.data.id)
        if stored_again is not None and stored_again.content_hash == item.row["content_hash"]:
            batch.results[item.position]["status"] = "duplicate"
        else:
            batch.reject(item.position, [_immutable(item)])
    batch.visits = [v for v in fresh if v.data.id in inserted]


async def _resent_after_merge(
    session: AsyncSession, batch: _Batch, stored: Mapping[uuid.UUID, Any]
) -> set[uuid.UUID]:
    """Visits resent unchanged but for their household: a phone that learned of a merge
    points its visits at the survivor, where the server moved them too. The stored hash
    was taken with the household the visit was first sent for; a resend is the same
    visit if it hashes the same with one of the households merged into its own."""
    suspects = [
        item
        for item in batch.visits
        if item.data.id in stored
        and stored[item.data.id].content_hash != item.row["content_hash"]
        and stored[item.data.id].household_id == item.data.household_id
    ]
    if not suspects:
        return set()
    merged_from = await households.merged_from(session, {i.data.household_id for i in suspects})
    same = set()
    for item in suspects:
        for alias in merged_from.get(item.data.household_id, ()):
            content = {k: item.row[k] for k in VISIT_CONTENT} | {"household_id": str(alias)}
            if _sha256(content) == stored[item.data.id].content_hash:
                same.add(item.data.id)
                break
    return same


def _immutable(item: _Visit) -> FieldError:
    return FieldError(
        field=f"{item.prefix}.id",
        code="immutable",
        message="a different visit with this id is stored; send a new visit with `corrects`",
    )


def _uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(value)


def _candidate(
    item_id: Any, kind: str, value: Any, by: Any, device: Any, at: datetime | str
) -> dict[str, Any]:
    """A conflict candidate (the fields of ConflictCandidate but its conflict)."""
    return {
        "item_id": _uuid(item_id),
        "kind": kind,
        "value": value,
        "recorded_by": _uuid(by),
        "device_id": _uuid(device),
        "recorded_at": at
        if isinstance(at, datetime)
        else datetime.fromisoformat(at).replace(tzinfo=UTC),
    }


async def _fold(
    session: AsyncSession,
    batch: _Batch,
    locked: dict[uuid.UUID, Record],
    created: set[uuid.UUID],
) -> set[uuid.UUID]:
    """Fold what this batch stored; returns the new visits left out of the fold because
    another visit corrects them."""
    folded_here = set(locked)
    corrected = batch.corrected | {v.data.corrects for v in batch.visits if v.data.corrects}
    from_scratch = set(created) | {
        v.data.household_id for v in batch.visits if v.data.corrects is not None
    }
    from_scratch &= folded_here
    incremental: dict[uuid.UUID, list[Observation]] = defaultdict(list)
    for edit in batch.edits:
        incremental[edit.data.id].append(households.edit_observation(edit.row))
    for item in batch.visits:
        hid = item.data.household_id
        if hid in folded_here and item.data.id not in corrected:
            incremental[hid].append(visits.observation(item.row))
    full = await households.observations_for(session, from_scratch) if from_scratch else {}
    changed = []
    for hid in sorted(folded_here):
        if hid in from_scratch:
            if households.apply(locked[hid], full[hid], from_scratch=True):
                changed.append(locked[hid])
        elif incremental.get(hid) and households.apply(
            locked[hid], incremental[hid], from_scratch=False
        ):
            changed.append(locked[hid])
    # A household that changes settlement leaves a tombstone in the old one (a trigger).
    await households.save_folded(session, changed)
    # Visits that waited for the new households are folded now. No other transaction can
    # add visits to these households meanwhile: serialize_writers holds them.
    await visits.mark_folded(session, created)
    return corrected


async def _open_conflicts(
    session: AsyncSession,
    batch: _Batch,
    settings: Settings,
    locked: dict[uuid.UUID, Record],
    created: set[uuid.UUID],
    before: dict[uuid.UUID, FoldState],
    corrected: set[uuid.UUID],
) -> None:
    book = ConflictBook()
    marks: list[tuple[int, ConflictKey]] = []
    user = str(batch.principal.user_id)
    for edit in batch.edits:
        state = before.get(edit.data.id)
        base = edit.data.base_version
        if state is None or base is None:
            continue
        for name, value in edit.row["fields"].items():
            stamp = state.stamps.get(name)
            if stamp is None or stamp.version <= base or stamp.by == user:
                continue
            if state.values.get(name) == value:
                continue
            current = _candidate(
                stamp.key[2],
                "household_edit",
                state.values.get(name),
                stamp.by,
                stamp.key[1],
                stamp.key[0],
            )
            proposed = _candidate(
                edit.row["id"],
                "household_edit",
                value,
                user,
                batch.device_id,
                edit.row["observed_at"],
            )
            key = book.gather(edit.data.id, name, "stale_edit", [current, proposed])
            marks.append((edit.position, key))

    marks += await _decision_conflicts(session, batch, settings, book, locked, created, corrected)
    ids = await book.save(session)
    for position, key in marks:
        result = batch.results[position]
        result["status"] = "conflict"
        if str(ids[key]) not in result["conflicts"]:
            result["conflicts"].append(str(ids[key]))


async def _decision_conflicts(
    session: AsyncSession,
    batch: _Batch,
    settings: Settings,
    book: ConflictBook,
    locked: dict[uuid.UUID, Record],
    created: set[uuid.UUID],
    corrected: set[uuid.UUID],
) -> list[tuple[int, ConflictKey]]:
    """Contacted visits by different workers within the window that record different
    decisions. This batch's visits to known households are compared with other workers'
    visits; for a household that just arrived, all its visits (some were waiting as
    pending) are compared with each other. Returns which results to mark as conflicts."""
    window = timedelta(hours=settings.conflict_window_hours)
    positions = {v.data.id: v.position for v in batch.visits}
    marks: list[tuple[int, ConflictKey]] = []
    checks: list[Mapping[Any, Any]] = [
        v.row
        for v in batch.visits
        if v.data.outcome == "contacted"
        and v.data.household_id in locked
        and v.data.household_id not in created
        and v.data.id not in corrected
    ]
    rivals: dict[uuid.UUID, list[Mapping[Any, Any]]] = defaultdict(list)
    if checks:
        times = [v["visited_at"] for v in checks]
        for row in await visits.contacted_between(
            session,
            {v["household_id"] for v in checks},
            min(times) - window,
            max(times) + window,
            not_by=batch.principal.user_id,
        ):
            rivals[row.household_id].append(row._mapping)
    arrived = created & set(locked)
    if arrived:
        for row in await visits.contacted_between(session, arrived, EARLIEST, batch.received_at):
            rivals[row.household_id].append(row._mapping)
            checks.append(row._mapping)
    for visit in checks:
        clashing = [
            r
            for r in rivals[visit["household_id"]]
            if r["id"] != visit["id"]
            and r["recorded_by"] != visit["recorded_by"]
            and r["decision"] != visit["decision"]
            and abs(r["visited_at"] - visit["visited_at"]) <= window
        ]
        if not clashing:
            continue
        candidates = [
            _candidate(
                v["id"], "visit", v["decision"], v["recorded_by"], v["device_id"],
                v["visited_at"],
            )
            for v in (*clashing, visit)
        ]  # fmt: skip
        key = book.gather(visit["household_id"], "decision", "decision_disagreement", candidates)
        if visit["id"] in positions:
            marks.append((positions[visit["id"]], key))
    return marks


async def push(
    session: AsyncSession,
    settings: Settings,
    principal: Principal,
    body: bytes,
    received_at: datetime,
) -> bytes:
    """Process one pushed batch and return the response body, as stored in the journal.

    `received_at` is when the request arrived, before its body was read: a slow upload
    must not count as clock offset.
    """
    document = parse_document(body)
    try:
        envelope = PushEnvelope.model_validate(document)
    except ValidationError as exc:
        errors = validation_field_errors(exc.errors())
        raise Invalid("The batch envelope is not valid.", errors=errors) from None
    if principal.device_id is None or envelope.device_id != principal.device_id:
        raise Forbidden("device_id must be the device this token was issued to.")
    item_count = len(envelope.households) + len(envelope.visits)
    if item_count > settings.batch_max_items:
        raise PayloadTooLarge(
            f"The batch has {item_count} items; at most {settings.batch_max_items} are accepted. "
            "Split it into smaller batches."
        )
    identity = batch_identity(document)
    clock = ClockCorrection.estimate(
        envelope.sent_at, received_at, settings.clock_tolerance_seconds
    )
    claimed = await repository.claim(
        session,
        batch_id=envelope.batch_id,
        device_id=envelope.device_id,
        user_id=principal.user_id,
        body_sha256=identity,
        request_body=body,
        app_version=envelope.app_version,
        sent_at_device=envelope.sent_at,
        clock_offset_seconds=clock.offset.total_seconds(),
        item_count=item_count,
        received_at=received_at,
    )
    if not claimed:
        earlier = await repository.get(session, envelope.batch_id)
        if (
            earlier is None
            or earlier.body_sha256 != identity
            or earlier.device_id != envelope.device_id
        ):
            raise Conflict("This batch_id was already used for a different batch.")
        metrics.count_after_commit(session, metrics.PUSH_BATCHES.labels(outcome="replayed"))
        return earlier.response_body

    batch = _Batch(
        principal=principal,
        device_id=envelope.device_id,
        batch_id=envelope.batch_id,
        clock=clock,
        received_at=received_at,
    )
    _read_households(batch, envelope.households)
    _read_visits(batch, envelope.visits)
    await _reject_unknown_settlements(session, batch)
    await _follow_merges(session, batch)
    locked, created, before = await _store_households(session, batch)
    await _store_visits(session, batch, locked)
    corrected = await _fold(session, batch, locked, created)
    await _open_conflicts(session, batch, settings, locked, created, before, corrected)
    await session.flush()

    pending = {v.data.id for v in batch.visits if v.data.household_id not in locked}
    for item in batch.visits:
        if item.data.id in pending and batch.results[item.position]["status"] == "applied":
            batch.results[item.position]["status"] = "pending"
    for position, result in enumerate(batch.results):
        household_id = batch.household_of.get(position)
        if result["status"] != "rejected" and household_id in locked:
            result["version"] = locked[household_id]["version"]

    # Shaped as PushResponse; serialised directly, as it is stored and replayed verbatim.
    response = orjson.dumps(
        {
            "batch_id": str(envelope.batch_id),
            "received_at": received_at,
            "clock_offset_seconds": clock.offset.total_seconds(),
            "results": batch.results,
        },
        option=orjson.OPT_UTC_Z,
    )
    await repository.store_response(session, envelope.batch_id, response)
    await auth.record_sync(session, envelope.device_id, received_at, envelope.app_version)
    _count_accepted(session, batch)
    return response


def _count_accepted(session: AsyncSession, batch: _Batch) -> None:
    """The batch and its items by status, counted once the request's transaction commits."""
    items: dict[tuple[str, str], int] = defaultdict(int)
    for result in batch.results:
        items[result["kind"], result["status"]] += 1
    for (kind, status), count in items.items():
        metrics.count_after_commit(
            session, metrics.PUSH_ITEMS.labels(kind=kind, status=status), count
        )
    metrics.count_after_commit(session, metrics.PUSH_BATCHES.labels(outcome="accepted"))


def count_refused(exc: DomainError) -> None:
    """A batch refused whole stored nothing; it counts at once: `conflict` for a batch_id
    reused for another batch, `retry` for a 503, `refused` for any other error."""
    if isinstance(exc, Conflict):
        outcome = "conflict"
    elif isinstance(exc, RetryLater):
        outcome = "retry"
    else:
        outcome = "refused"
    metrics.PUSH_BATCHES.labels(outcome=outcome).inc()
