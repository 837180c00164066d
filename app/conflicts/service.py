"""Opening conflicts: one open conflict per household and field gathers every candidate."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.conflicts import repository
from app.conflicts.models import Conflict

ConflictKey = tuple[uuid.UUID, str]


class ConflictBook:
    """Candidates gathered while a batch is processed, written in one go by `save`.

    Only the households that have something to add are read from the database, so a
    batch with no disagreement reads no conflict at all.
    """

    def __init__(self) -> None:
        self._wanted: dict[ConflictKey, tuple[str, list[dict[str, Any]]]] = {}

    def gather(
        self, household_id: uuid.UUID, field: str, kind: str, candidates: Sequence[dict[str, Any]]
    ) -> ConflictKey:
        """Note candidates for the conflict on (household, field); `save` stores them."""
        key = (household_id, field)
        self._wanted.setdefault(key, (kind, []))[1].extend(candidates)
        return key

    async def save(self, session: AsyncSession) -> dict[ConflictKey, uuid.UUID]:
        """Add the candidates to each open conflict, opening one where there is none.

        A candidate already listed (same item id) is not added twice. The households
        must be locked by the caller, so no other transaction opens the same conflict.
        """
        if not self._wanted:
            return {}
        open_conflicts = await repository.open_for(session, {h for h, _ in self._wanted})
        ids: dict[ConflictKey, uuid.UUID] = {}
        for (household_id, field), (kind, candidates) in self._wanted.items():
            conflict = open_conflicts.get((household_id, field))
            if conflict is None:
                conflict = Conflict(household_id=household_id, field=field, kind=kind)
                repository.stage(session, conflict)
            listed = {c["item_id"] for c in conflict.candidates}
            new = []
            for candidate in candidates:
                if candidate["item_id"] not in listed:
                    listed.add(candidate["item_id"])
                    new.append(candidate)
            if new:
                # Assign a new list so the JSON column is seen as changed.
                conflict.candidates = [*conflict.candidates, *new]
            ids[(household_id, field)] = conflict.id
        return ids
