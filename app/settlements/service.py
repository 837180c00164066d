"""Settlement reference data (import from a KATOTTG-shaped CSV) and user assignments."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Collection, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.core.errors import FieldError, Forbidden, Invalid, NotFound
from app.settlements import repository
from app.settlements.models import CATEGORIES, Settlement
from app.settlements.schemas import CodeCount, Progress, SettlementProgress, SettlementSummary
from app.visits.codes import NEEDS, REASONS_LEAVE, REASONS_STAY, Code

BUNDLED_SETTLEMENTS = Path(__file__).parent / "data" / "settlements-kupianskyi-raion.csv"
REQUIRED_COLUMNS = (
    "pcode",
    "katottg",
    "category",
    "name_uk",
    "name_en",
    "hromada_pcode",
    "hromada_uk",
    "hromada_en",
    "raion_pcode",
    "oblast_pcode",
)
_LENGTHS = {"pcode": 12, "katottg": 19, "hromada_pcode": 9, "raion_pcode": 6, "oblast_pcode": 4}


def parse_settlements_csv(text: str) -> list[dict[str, Any]]:
    """Validate a settlements file; every problem is reported with its line and column."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise Invalid(f"The settlements file lacks the columns: {', '.join(missing)}.")
    rows: list[dict[str, Any]] = []
    errors: list[FieldError] = []
    seen: set[str] = set()
    for line, raw in enumerate(reader, start=2):
        row = {c: (raw.get(c) or "").strip() for c in REQUIRED_COLUMNS}
        for column in REQUIRED_COLUMNS:
            if not row[column]:
                errors.append(
                    FieldError(field=f"line {line}.{column}", code="missing", message="is empty")
                )
        for column, length in _LENGTHS.items():
            value = row[column]
            if value and (len(value) != length or not value.startswith("UA")):
                errors.append(
                    FieldError(
                        field=f"line {line}.{column}",
                        code="invalid_code",
                        message=f"{value!r} is not a {length}-character UA code",
                    )
                )
        if row["category"] and row["category"] not in CATEGORIES:
            errors.append(
                FieldError(
                    field=f"line {line}.category",
                    code="unknown_code",
                    message=f"{row['category']!r} is not one of {', '.join(CATEGORIES)}",
                )
            )
        if row["pcode"] in seen:
            errors.append(
                FieldError(
                    field=f"line {line}.pcode", code="duplicate", message=f"{row['pcode']} repeats"
                )
            )
        seen.add(row["pcode"])
        ordered = (raw.get("evacuation_ordered_on") or "").strip()
        if ordered:
            try:
                row["evacuation_ordered_on"] = date.fromisoformat(ordered)
                row["evacuation_ordered"] = True
            except ValueError:
                errors.append(
                    FieldError(
                        field=f"line {line}.evacuation_ordered_on",
                        code="invalid_date",
                        message=f"{ordered!r} is not a YYYY-MM-DD date",
                    )
                )
        rows.append(row)
    if errors:
        raise Invalid(f"The settlements file has {len(errors)} problem(s).", errors=errors[:50])
    if not rows:
        raise Invalid("The settlements file has no rows.")
    return rows


async def upsert(session: AsyncSession, rows: Sequence[dict[str, Any]], *, actor: str) -> int:
    """Store parsed settlement rows: new ones are added, known ones updated."""
    count = await repository.upsert_settlements(session, rows)
    await audit.record(
        session,
        action="settlements.import",
        entity_type="settlement",
        actor_username=actor,
        after={"rows": count},
    )
    return count


async def import_settlements(session: AsyncSession, text: str, *, actor: str = "cli") -> int:
    """Import a settlements CSV in the shape of the bundled KATOTTG extract."""
    return await upsert(session, parse_settlements_csv(text), actor=actor)


async def assigned_pcodes(session: AsyncSession, user_id: uuid.UUID) -> list[str]:
    return await repository.assigned_pcodes(session, user_id)


#: A scope: the P-codes of the settlements a user may see, or None for all of them.
Scope = frozenset[str] | None


async def visible_pcodes(session: AsyncSession, user_id: uuid.UUID, role: str) -> Scope:
    """What a user may see: an admin everything; a supervisor its assigned settlements, or
    everything when it has none; anyone else only its assigned settlements."""
    if role == "admin":
        return None
    assigned = frozenset(await repository.assigned_pcodes(session, user_id))
    if role == "supervisor" and not assigned:
        return None
    return assigned


def require_visible(scope: Scope, pcodes: Collection[str]) -> None:
    """403 naming the settlements outside the scope, if any."""
    outside = sorted(set(pcodes) - scope) if scope is not None else []
    if outside:
        raise Forbidden(f"Not assigned to you: {', '.join(outside)}.")


async def all_assignments(session: AsyncSession) -> dict[uuid.UUID, list[str]]:
    return await repository.all_assignments(session)


async def assign(
    session: AsyncSession,
    user_id: uuid.UUID,
    pcodes: Sequence[str],
    *,
    username: str,
    actor: str = "cli",
) -> list[str]:
    """Assign settlements to a user; already-assigned ones are kept. Returns the new total."""
    unknown = sorted(set(pcodes) - await repository.existing_pcodes(session, pcodes))
    if unknown:
        raise NotFound(f"Unknown settlement P-code(s): {', '.join(unknown)}.")
    before = await repository.assigned_pcodes(session, user_id)
    new = sorted(set(pcodes) - set(before))
    await repository.add_assignments(session, user_id, new)
    after = sorted({*before, *new})
    if new:
        await _record_assignments(session, "user.assign", user_id, username, actor, before, after)
    return after


async def unassign(
    session: AsyncSession,
    user_id: uuid.UUID,
    pcodes: Sequence[str],
    *,
    username: str,
    actor: str = "cli",
) -> list[str]:
    """Take settlements away from a user; the user's phones are told to drop them on their
    next pull. Returns what stays assigned."""
    before = await repository.assigned_pcodes(session, user_id)
    not_assigned = sorted(set(pcodes) - set(before))
    if not_assigned:
        raise NotFound(f"Not assigned to {username}: {', '.join(not_assigned)}.")
    await repository.remove_assignments(session, user_id, pcodes)
    after = sorted(set(before) - set(pcodes))
    if pcodes:
        await _record_assignments(session, "user.unassign", user_id, username, actor, before, after)
    return after


async def _record_assignments(
    session: AsyncSession,
    action: str,
    user_id: uuid.UUID,
    username: str,
    actor: str,
    before: list[str],
    after: list[str],
) -> None:
    await audit.record(
        session,
        action=action,
        entity_type="user",
        entity_id=user_id,
        actor_username=actor,
        before={"username": username, "settlements": before},
        after={"username": username, "settlements": after},
    )


async def all_pcodes(session: AsyncSession) -> set[str]:
    return await repository.all_pcodes(session)


async def existing_pcodes(session: AsyncSession, pcodes: Collection[str]) -> set[str]:
    """Which of these P-codes name a known settlement."""
    return await repository.existing_pcodes(session, pcodes)


# --- Progress for supervisors --------------------------------------------------------

#: A household with either need counts once in `needs_transport`.
TRANSPORT_NEEDS = ("transport", "accessible_transport")


def _progress_row(
    settlement: Settlement,
    tally: repository.HouseholdTally,
    needs_transport: int,
    open_conflicts: int,
) -> dict[str, object]:
    return {
        "pcode": settlement.pcode,
        "name_uk": settlement.name_uk,
        "name_en": settlement.name_en,
        "hromada_pcode": settlement.hromada_pcode,
        "hromada_uk": settlement.hromada_uk,
        "hromada_en": settlement.hromada_en,
        "evacuation_ordered": settlement.evacuation_ordered,
        "evacuation_ordered_on": settlement.evacuation_ordered_on,
        "progress": Progress(
            households=tally.households,
            visited=tally.visited,
            leave=tally.leave,
            stay=tally.stay,
            undecided=tally.undecided,
            no_decision=tally.no_decision,
            needs_transport=needs_transport,
            open_conflicts=open_conflicts,
            last_visit=tally.last_visit,
        ),
    }


async def _progress_rows(session: AsyncSession, scope: Scope) -> list[dict[str, object]]:
    """Each settlement in scope with its counts, by P-code: four aggregate queries in all."""
    if scope is not None and not scope:
        return []
    places = await repository.settlements_in(session, scope)
    tallies = await repository.household_tallies(session, scope)
    transport = await repository.households_with_any(session, scope, "needs", TRANSPORT_NEEDS)
    conflicts = await repository.open_conflicts(session, scope)
    empty = repository.HouseholdTally()
    return [
        _progress_row(
            s, tallies.get(s.pcode, empty), transport.get(s.pcode, 0), conflicts.get(s.pcode, 0)
        )
        for s in places
    ]


async def progress(session: AsyncSession, scope: Scope) -> list[SettlementProgress]:
    """Where the work stands in every settlement of the scope, by P-code."""
    return [SettlementProgress.model_validate(row) for row in await _progress_rows(session, scope)]


def _code_counts(codes: Sequence[Code], counted: dict[str, int]) -> list[CodeCount]:
    """Every code of the list (each once), then any stored code the list lacks, with its
    count; most households first, then by code."""
    listed: dict[str, Code] = {}
    for code in codes:
        listed.setdefault(code.code, code)
    rows = [
        CodeCount(
            code=c.code, en=c.en, uk=c.uk, sensitive=c.sensitive, households=counted.get(c.code, 0)
        )
        for c in listed.values()
    ]
    rows += [
        CodeCount(code=code, en=code, uk=code, households=count)
        for code, count in counted.items()
        if code not in listed
    ]
    return sorted(rows, key=lambda row: (-row.households, row.code))


async def summary(session: AsyncSession, pcode: str, scope: Scope) -> SettlementSummary:
    """One settlement's progress with every reason and need counted. 404 for an unknown
    P-code, 403 for one outside the scope."""
    if not await repository.existing_pcodes(session, [pcode]):
        raise NotFound(f"No settlement with P-code {pcode}.")
    require_visible(scope, [pcode])
    [row] = await _progress_rows(session, frozenset([pcode]))
    reasons = await repository.households_per_code(session, pcode, "reasons")
    needs = await repository.households_per_code(session, pcode, "needs")
    return SettlementSummary.model_validate(
        {
            **row,
            "reasons": _code_counts((*REASONS_STAY, *REASONS_LEAVE), reasons),
            "needs": _code_counts(NEEDS, needs),
        }
    )
