"""Opening conflicts: one open conflict per household and field gathers every candidate."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.conflicts import repository
from app.conflicts.models import Conflict


class ConflictBook:
    """The open conflicts of a set of (locked) households, gathering new candidates."""

    def __init__(
        self, session: AsyncSession, open_conflicts: dict[tuple[uuid.UUID, str], Conflict]
    ):
        self._session = session
        self._open = open_conflicts
        self.opened: list[Conflict] = []

    @classmethod
    async def load(
        cls, session: AsyncSession, household_ids: Collection[uuid.UUID]
    ) -> ConflictBook:
        return cls(session, await repository.open_for(session, household_ids))

    def gather(
        self, household_id: uuid.UUID, field: str, kind: str, candidates: Sequence[dict[str, Any]]
    ) -> uuid.UUID:
        """Add candidates to the open conflict on (household, field), opening one if needed.

        A candidate already listed (same item id) is not added twice.
        """
        conflict = self._open.get((household_id, field))
        if conflict is None:
            conflict = Conflict(household_id=household_id, field=field, kind=kind, candidates=[])
            repository.stage(self._session, conflict)
            self._open[(household_id, field)] = conflict
            self.opened.append(conflict)
        listed = {c["item_id"] for c in conflict.candidates}
        new = [c for c in candidates if c["item_id"] not in listed]
        if new:
            # Assign a new list so the JSON column is seen as changed.
            conflict.candidates = [*conflict.candidates, *new]
        return conflict.id
