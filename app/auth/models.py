"""Users, their devices, their refresh tokens, and the count of failed sign-ins."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, Column, ForeignKey, Index, Integer, String
from sqlmodel import Field, SQLModel

from app.core.types import UTCDateTime, utcnow


class Role(StrEnum):
    field_worker = "field_worker"
    supervisor = "supervisor"
    partner = "partner"
    admin = "admin"


ROLE_VALUES = ", ".join(f"'{r.value}'" for r in Role)


class User(SQLModel, table=True):
    """A person who signs in: a field worker, supervisor, partner or administrator."""

    __tablename__ = "user_account"
    __table_args__ = (CheckConstraint(f"role IN ({ROLE_VALUES})", name="role"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    username: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    full_name: str = Field(default="", max_length=200)
    role: str = Field(sa_column=Column(String(20), nullable=False))
    password_hash: str = Field(max_length=255)
    is_active: bool = True
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class Device(SQLModel, table=True):
    """A phone, registered by its owner's first sign-in from it (its id is the OAuth2 client_id)."""

    __tablename__ = "device"

    id: uuid.UUID = Field(primary_key=True)
    owner_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("user_account.id"), nullable=False, index=True)
    )
    label: str = Field(default="", max_length=120)
    first_seen_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    last_seen_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_sync_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    app_version: str | None = Field(default=None, max_length=64)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class RefreshToken(SQLModel, table=True):
    """One issued refresh token, stored as a hash. Rotation chains tokens into a family.

    Presenting a token that was already rotated means it leaked (or a retry raced
    a rotation); the whole family is revoked and the holder must sign in again.
    """

    __tablename__ = "refresh_token"
    __table_args__ = (Index("ix_refresh_token_family_id", "family_id"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    token_hash: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    family_id: uuid.UUID
    user_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("user_account.id"), nullable=False, index=True)
    )
    device_id: uuid.UUID | None = Field(
        default=None, sa_column=Column(ForeignKey("device.id"), nullable=True)
    )
    issued_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    expires_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    rotated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


THROTTLE_SCOPES = ("username", "address")


class LoginThrottle(SQLModel, table=True):
    """Failed sign-ins counted for one username (known or not) or one client address, in
    the database so that every server process sees the same count (app/auth/throttle.py).

    `failures` counts a username's attempts let through, or an address's failed ones,
    since the count last started; once it reaches the limit, each one more locks the key
    until `locked_until`, at `lock_level` (locks in a row: each twice as long as the one
    before). `reset_at` is when the count starts again, a window after its last attempt
    or lock; `locked_until` stays after the lock ends, and `lock_level` counts on from it
    while it ended less than a day ago. `last_attempt_id` tells an attempt whether it was
    counted (a locked username refuses it instead).
    """

    __tablename__ = "login_throttle"
    __table_args__ = (
        CheckConstraint(
            "scope IN (" + ", ".join(f"'{s}'" for s in THROTTLE_SCOPES) + ")", name="scope"
        ),
        Index("ix_login_throttle_reset_at", "reset_at"),
    )

    scope: str = Field(sa_column=Column(String(16), primary_key=True))
    subject: str = Field(sa_column=Column(String(64), primary_key=True))
    failures: int = Field(default=0, nullable=False)
    lock_level: int = Field(
        default=0, sa_column=Column(Integer, nullable=False, server_default="0")
    )
    locked_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    reset_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    last_attempt_id: uuid.UUID
