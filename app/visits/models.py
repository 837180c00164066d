"""A stored visit, with the device's raw times and the server-corrected ones."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import (
    CheckConstraint,
    Column,
    ColumnElement,
    ForeignKey,
    Index,
    String,
    Text,
    exists,
    text,
)
from sqlmodel import Field, SQLModel

from app.core.types import JSONDocument, UTCDateTime, utcnow

OUTCOMES = ("contacted", "not_home", "refused", "household_left", "house_damaged")
DECISIONS = ("leave", "stay", "undecided")
REVIEW_STATES = ("unreviewed", "approved", "flagged", "rejected")
FOLD_STATES = ("pending", "folded")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


class Visit(SQLModel, table=True):
    """One observation at the door. Immutable once stored; `corrects` supersedes an earlier one.

    `household_id` has no foreign key on purpose: a visit may arrive before its
    household (it is then `pending`) and is folded when the household arrives.
    """

    __tablename__ = "visit"
    __table_args__ = (
        CheckConstraint(_one_of("outcome", OUTCOMES), name="outcome"),
        CheckConstraint(f"decision IS NULL OR {_one_of('decision', DECISIONS)}", name="decision"),
        CheckConstraint(_one_of("review_state", REVIEW_STATES), name="review_state"),
        CheckConstraint(_one_of("fold_state", FOLD_STATES), name="fold_state"),
        Index("ix_visit_household_id_visited_at", "household_id", "visited_at"),
        Index("ix_visit_corrects", "corrects"),
        # Only the few visits waiting for their household: /metrics counts them on every
        # scrape, and a household's arrival finds its own.
        Index(
            "ix_visit_pending",
            "household_id",
            postgresql_where=text("fold_state = 'pending'"),
            sqlite_where=text("fold_state = 'pending'"),
        ),
    )

    id: uuid.UUID = Field(primary_key=True)
    household_id: uuid.UUID
    device_id: uuid.UUID = Field(sa_column=Column(ForeignKey("device.id"), nullable=False))
    recorded_by: uuid.UUID = Field(
        sa_column=Column(ForeignKey("user_account.id"), nullable=False, index=True)
    )
    batch_id: uuid.UUID  # no index: nothing reads visits by batch, and each index slows the push
    # Times: as the device reported them, and corrected for the device's clock offset.
    visited_at_device: datetime = Field(sa_type=UTCDateTime, nullable=False)
    visited_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    clock_corrected: bool = False
    future_clamped: bool = False
    outcome: str = Field(sa_column=Column(String(24), nullable=False))
    decision: str | None = Field(default=None, sa_column=Column(String(16), nullable=True))
    reasons: list[str] = Field(default_factory=list, sa_type=JSONDocument, nullable=False)
    reason_note: str = Field(default="", sa_type=Text)
    leave_mode: str | None = Field(default=None, max_length=32)
    signed_refusal: bool | None = None
    people_present: int | None = None
    needs: list[str] = Field(default_factory=list, sa_type=JSONDocument, nullable=False)
    planned_departure: date | None = None
    destination: str = Field(default="", sa_type=Text)
    consent_to_share: bool = False
    lat: float | None = None
    lon: float | None = None
    accuracy_m: float | None = None
    notes: str = Field(default="", sa_type=Text)
    corrects: uuid.UUID | None = None
    #: SHA-256 of the validated visit: a resend with the same id and hash is a
    #: duplicate, with another hash an attempt to change an immutable visit.
    content_hash: str = Field(max_length=64)
    fold_state: str = Field(default="pending", sa_column=Column(String(16), nullable=False))
    review_state: str = Field(default="unreviewed", sa_column=Column(String(16), nullable=False))
    review_note: str = Field(default="", sa_type=Text)
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


def replaced_by_correction(*, received_by: datetime | None = None) -> ColumnElement[bool]:
    """The visit (the `visit` table in the enclosing query) is replaced: a visit of the
    same household that is not rejected names it in `corrects` (one received by
    `received_by`, when given). A replaced visit stops counting in the fold."""
    visit = Visit.__table__  # type: ignore[attr-defined]
    correcting = visit.alias("correcting")
    conditions = [
        correcting.c.corrects == visit.c.id,
        correcting.c.household_id == visit.c.household_id,
        correcting.c.review_state != "rejected",
    ]
    if received_by is not None:
        conditions.append(correcting.c.received_at <= received_by)
    return exists().where(*conditions)
