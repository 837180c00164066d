"""Visit rules: what a stored visit says to the fold, and access to stored visits."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import AnyRow
from app.households.fold import Observation, observation_key, visit_values
from app.visits import codes, repository
from app.visits.schemas import CodeLists, CodeOut

stored_and_corrected = repository.stored_and_corrected
insert_new = repository.insert_new
mark_folded = repository.mark_folded
contacted_between = repository.contacted_between
count_pending = repository.count_pending


def observation(visit: AnyRow | dict[str, Any]) -> Observation:
    """A stored visit (a row or the row's values) as an observation for the fold."""
    v = visit._mapping if isinstance(visit, Row) else visit
    return Observation(
        key=observation_key(v["visited_at"], v["device_id"], v["id"]),
        by=str(v["recorded_by"]),
        values=visit_values(
            outcome=v["outcome"],
            visited_at=v["visited_at"],
            decision=v["decision"],
            reasons=list(v["reasons"]),
            needs=list(v["needs"]),
            planned_departure=v["planned_departure"],
            consent_to_share=bool(v["consent_to_share"]),
        ),
    )


async def observations_for(
    session: AsyncSession, household_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, list[Observation]]:
    """Every visit still in the fold for these households: not rejected, not corrected."""
    rows = await repository.for_households(session, household_ids)
    # A correction counts only within its household and while it is itself in the fold.
    replaced = {
        (r.household_id, r.corrects)
        for r in rows
        if r.corrects is not None and r.review_state != "rejected"
    }
    result: dict[uuid.UUID, list[Observation]] = {h: [] for h in household_ids}
    for row in rows:
        if row.review_state != "rejected" and (row.household_id, row.id) not in replaced:
            result[row.household_id].append(observation(row))
    return result


def code_lists() -> CodeLists:
    def out(items: Sequence[codes.Code]) -> list[CodeOut]:
        return [CodeOut(code=c.code, en=c.en, uk=c.uk, sensitive=c.sensitive) for c in items]

    return CodeLists(
        outcomes=out(codes.OUTCOMES),
        decisions=out(codes.DECISIONS),
        reasons_stay=out(codes.REASONS_STAY),
        reasons_leave=out(codes.REASONS_LEAVE),
        needs=out(codes.NEEDS),
        leave_modes=out(codes.LEAVE_MODES),
    )
