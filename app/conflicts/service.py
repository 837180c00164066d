"""Opening conflicts: one open conflict per household and field gathers every candidate."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.conflicts import repository
from app.core import metrics
from app.core.types import utcnow

ConflictKey = tuple[uuid.UUID, str]


class ConflictBook:
    """Candidates gathered while a batch is processed, written in one go by `save`.

    Only the households that have something to add are read, and only the ids of
    their open conflicts: a batch with no disagreement reads no conflict at all.
    """

    def __init__(self) -> None:
        self._wanted: dict[ConflictKey, tuple[str, list[dict[str, Any]]]] = {}

    def gather(
        self, household_id: uuid.UUID, field: str, kind: str, candidates: Sequence[dict[str, Any]]
    ) -> ConflictKey:
        """Note candidates (ConflictCandidate fields but conflict_id) for the conflict on
        (household, field); `save` stores them."""
        key = (household_id, field)
        self._wanted.setdefault(key, (kind, []))[1].extend(candidates)
        return key

    async def save(self, session: AsyncSession) -> dict[ConflictKey, uuid.UUID]:
        """Add the candidates to each open conflict, opening one where there is none.

        A candidate already listed (same item) is not added twice. The households must be
        locked by the caller, so no other transaction opens the same conflict meanwhile.
        """
        if not self._wanted:
            return {}
        ids = await repository.open_ids(session, {h for h, _ in self._wanted})
        now = utcnow()
        new_conflicts = []
        for (household_id, field), (kind, _) in self._wanted.items():
            if (household_id, field) not in ids:
                ids[(household_id, field)] = conflict_id = uuid.uuid4()
                new_conflicts.append(
                    {
                        "id": conflict_id,
                        "household_id": household_id,
                        "field": field,
                        "kind": kind,
                        "status": "open",
                        "opened_at": now,
                        "resolution_note": "",
                    }
                )
        await repository.insert_conflicts(session, new_conflicts)
        for opened_kind, opened in Counter(str(c["kind"]) for c in new_conflicts).items():
            metrics.count_after_commit(
                session, metrics.CONFLICTS_OPENED.labels(kind=opened_kind), opened
            )
        rows: dict[tuple[uuid.UUID, uuid.UUID], dict[str, Any]] = {}
        for key, (_, candidates) in self._wanted.items():
            for candidate in candidates:
                row = {"id": uuid.uuid4(), "conflict_id": ids[key], "added_at": now, **candidate}
                rows.setdefault((ids[key], candidate["item_id"]), row)
        await repository.insert_candidates(session, list(rows.values()))
        return {key: ids[key] for key in self._wanted}


resolutions_for = repository.resolutions_for
