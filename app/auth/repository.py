"""Queries on users, devices, refresh tokens and the login throttle. Flush, never commit."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Insert,
    bindparam,
    case,
    delete,
    exists,
    null,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlmodel import col, select

from app.auth.models import Device, LoginThrottle, RefreshToken, Role, User
from app.core.db import insert_ignoring_duplicates, is_postgresql
from app.core.types import UTCDateTime


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    return await session.get(User, user_id)


async def get_user_by_username(session: AsyncSession, username: str) -> User | None:
    result = await session.execute(select(User).where(col(User.username) == username))
    return result.scalar_one_or_none()


async def list_users(session: AsyncSession) -> Sequence[User]:
    result = await session.execute(select(User).order_by(col(User.username)))
    return result.scalars().all()


async def get_user_and_device(
    session: AsyncSession, user_id: uuid.UUID, device_id: uuid.UUID | None
) -> tuple[User | None, Device | None]:
    """The token's user and device in one round trip."""
    if device_id is None:
        return await session.get(User, user_id), None
    result = await session.execute(
        select(User, Device)
        .outerjoin(Device, (col(Device.id) == device_id) & (col(Device.owner_id) == User.id))
        .where(col(User.id) == user_id)
    )
    row = result.one_or_none()
    return (row[0], row[1]) if row else (None, None)


async def get_device(session: AsyncSession, device_id: uuid.UUID) -> Device | None:
    return await session.get(Device, device_id)


async def list_devices(session: AsyncSession) -> Sequence[tuple[Device, str]]:
    result = await session.execute(
        select(Device, User.username)
        .join(User, col(User.id) == Device.owner_id)
        .order_by(col(User.username), col(Device.first_seen_at))
    )
    return [(row[0], row[1]) for row in result.all()]


async def get_refresh_token(session: AsyncSession, token_hash: str) -> RefreshToken | None:
    result = await session.execute(
        select(RefreshToken).where(col(RefreshToken.token_hash) == token_hash)
    )
    return result.scalar_one_or_none()


async def mark_rotated(
    session: AsyncSession, token_id: uuid.UUID, family_id: uuid.UUID, at: datetime
) -> bool:
    """Rotate a token only if it is unused, unrevoked, and no token of its family has been
    revoked (a revocation that raced this rotation still kills the family). False otherwise."""
    sibling = aliased(RefreshToken)
    result = await session.execute(
        update(RefreshToken)
        .where(
            col(RefreshToken.id) == token_id,
            col(RefreshToken.rotated_at).is_(None),
            col(RefreshToken.revoked_at).is_(None),
            ~exists().where(
                col(sibling.family_id) == family_id, col(sibling.revoked_at).is_not(None)
            ),
        )
        .values(rotated_at=at)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def revoke_family(session: AsyncSession, family_id: uuid.UUID, at: datetime) -> None:
    await session.execute(
        update(RefreshToken)
        .where(col(RefreshToken.family_id) == family_id, col(RefreshToken.revoked_at).is_(None))
        .values(revoked_at=at)
    )


async def lock_active_admins(session: AsyncSession) -> list[uuid.UUID]:
    """The active administrators' ids, locked until the transaction ends.

    PostgreSQL locks their rows, in id order (two transactions cannot deadlock on
    them). SQLite has one writer at a time, but reads before a transaction's first
    write see the database as it was then: a write that changes nothing comes first,
    so that this transaction waits for any other writer and then reads what it
    committed.
    """
    if not is_postgresql(session):
        admins = col(User.role) == Role.admin.value
        await session.execute(update(User).where(admins).values(role=Role.admin.value))
    result = await session.execute(
        select(User.id)
        .where(col(User.role) == Role.admin.value, col(User.is_active))
        .order_by(col(User.id))
        .with_for_update()
    )
    return list(result.scalars())


async def revoke_user_tokens(session: AsyncSession, user_id: uuid.UUID, at: datetime) -> None:
    """Every refresh token of the user, whatever its device and family."""
    await session.execute(
        update(RefreshToken)
        .where(col(RefreshToken.user_id) == user_id, col(RefreshToken.revoked_at).is_(None))
        .values(revoked_at=at)
    )


async def add(session: AsyncSession, row: User | Device | RefreshToken) -> None:
    session.add(row)
    await session.flush()


async def add_device_if_new(session: AsyncSession, device: Device) -> bool:
    """Insert the device unless its id is taken (by a sign-in of the same phone at the same
    moment, say); True if this call inserted it."""
    table = Device.__table__  # type: ignore[attr-defined]
    statement = insert_ignoring_duplicates(session, table, "id").values(device.model_dump())
    result = await session.execute(statement.returning(table.c.id))
    return result.scalar_one_or_none() is not None


# --- The login throttle ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ThrottleCount:
    """A key's state just after an attempt was counted against it (or refused by it)."""

    failures: int
    locked_until: datetime | None
    last_attempt_id: uuid.UUID


def _instant(name: str) -> BindParameter[datetime]:
    return bindparam(name, type_=UTCDateTime())


def _by_level(level: ColumnElement[int], prefix: str, steps: int) -> ColumnElement[Any]:
    """The parameter `{prefix}{k}` for the lock of `level` k + 1, the last one (`steps`
    - 1) for every level after."""
    last = _instant(f"{prefix}{steps - 1}")
    whens = [(level == k + 1, _instant(f"{prefix}{k}")) for k in range(steps - 1)]
    return case(*whens, else_=last) if whens else last


@cache
def _count_statement(dialect: str, limit: int, steps: int, unless_locked: bool) -> Insert:
    """The statement of `count_sign_in_attempt`, built once per database, limit, number
    of lock lengths and kind."""
    table = LoginThrottle.__table__  # type: ignore[attr-defined]
    failures, locked_until, reset_at = table.c.failures, table.c.locked_until, table.c.reset_at
    lock_level = table.c.lock_level
    now = _instant("now")
    count = case((reset_at <= now, 0), else_=failures) + 1
    # The level of the key's last lock, if it ended no longer ago than it is remembered.
    remembered = case((locked_until > _instant("levels_since"), lock_level), else_=0)
    locks = count >= limit
    level = remembered + 1

    def counted(value: ColumnElement[Any], current: ColumnElement[Any]) -> ColumnElement[Any]:
        """`value`, or, if the key is locked and refuses the attempt, its `current` value."""
        return case((locked_until > now, current), else_=value) if unless_locked else value

    first_locks = limit <= 1  # the key's first attempt reaches the limit
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    return (
        insert(table)
        .values(
            scope=bindparam("scope"),
            subject=bindparam("subject"),
            failures=1,
            lock_level=1 if first_locks else 0,
            locked_until=_instant("lock_0") if first_locks else null(),
            reset_at=_instant("reset_0" if first_locks else "reset_unlocked"),
            last_attempt_id=bindparam("attempt_id", type_=table.c.last_attempt_id.type),
        )
        .on_conflict_do_update(
            index_elements=[table.c.scope, table.c.subject],
            set_={
                "failures": counted(count, failures),
                "lock_level": counted(case((locks, level), else_=lock_level), lock_level),
                "locked_until": counted(
                    case((locks, _by_level(level, "lock_", steps)), else_=locked_until),
                    locked_until,
                ),
                "reset_at": counted(
                    case(
                        (locks, _by_level(level, "reset_", steps)),
                        else_=_instant("reset_unlocked"),
                    ),
                    reset_at,
                ),
                "last_attempt_id": counted(
                    bindparam("attempt_id", type_=table.c.last_attempt_id.type),
                    table.c.last_attempt_id,
                ),
            },
        )
        .returning(failures, locked_until, table.c.last_attempt_id)
    )


async def count_sign_in_attempt(
    session: AsyncSession,
    *,
    scope: str,
    subject: str,
    attempt_id: uuid.UUID,
    now: datetime,
    limit: int,
    locks: Sequence[datetime],
    resets: Sequence[datetime],
    reset_unlocked: datetime,
    levels_since: datetime,
    unless_locked: bool,
) -> ThrottleCount:
    """Count an attempt against a key in one statement, atomic under concurrency (the
    row is locked by `INSERT ... ON CONFLICT DO UPDATE`): a key whose `reset_at` has
    passed starts again at 1; otherwise the count goes up by one. From the `limit`-th
    count on, each counted attempt locks the key one level higher than its last lock
    (or at level 1 if that lock ended before `levels_since`), until the entry of `locks`
    for that level (the last for every level after; the same `resets` entry gives its
    `reset_at`). With `unless_locked`, a locked key refuses the attempt instead and stays
    as it is. `last_attempt_id` is the attempt's id only when it was counted. The
    returned `locked_until` is the key's last lock, which may have ended."""
    dialect = session.get_bind().dialect.name
    statement = _count_statement(dialect, limit, len(locks), unless_locked)
    parameters: dict[str, Any] = {
        "scope": scope,
        "subject": subject,
        "attempt_id": attempt_id,
        "now": now,
        "reset_unlocked": reset_unlocked,
        "levels_since": levels_since,
    }
    parameters |= {f"lock_{k}": until for k, until in enumerate(locks)}
    parameters |= {f"reset_{k}": until for k, until in enumerate(resets)}
    row = (await session.execute(statement, parameters)).one()
    return ThrottleCount(failures=row[0], locked_until=row[1], last_attempt_id=row[2])


async def is_users_phone(session: AsyncSession, username: str, device_id: uuid.UUID) -> bool:
    """Whether `device_id` is a registered, unrevoked phone of the account `username`
    (False alike for an unknown username, device, or someone else's device)."""
    result = await session.execute(
        select(col(Device.id))
        .join(User, col(User.id) == Device.owner_id)
        .where(
            col(Device.id) == device_id,
            col(Device.revoked_at).is_(None),
            col(User.username) == username,
        )
    )
    return result.first() is not None


async def forget_sign_in_failures(session: AsyncSession, *, scope: str, subject: str) -> None:
    """Start a key's count again from zero, lock included."""
    await session.execute(
        delete(LoginThrottle).where(
            col(LoginThrottle.scope) == scope, col(LoginThrottle.subject) == subject
        )
    )


async def sign_in_locked_until(
    session: AsyncSession, *, scope: str, subject: str, now: datetime
) -> datetime | None:
    """When the key's lock ends, if it is locked at `now`."""
    result = await session.execute(
        select(col(LoginThrottle.locked_until)).where(
            col(LoginThrottle.scope) == scope,
            col(LoginThrottle.subject) == subject,
            col(LoginThrottle.locked_until) > now,
        )
    )
    return result.scalar_one_or_none()


async def prune_sign_in_failures(
    session: AsyncSession, now: datetime, *, levels_since: datetime, batch: int = 1000
) -> None:
    """Delete up to `batch` keys whose `reset_at` has passed and whose last lock, if any,
    ended before `levels_since` (its level is forgotten). Rows another transaction
    holds are skipped, not waited for: pruning never blocks a sign-in nor deadlocks with
    one (SQLite has no row locks and no FOR UPDATE: it has one writer at a time)."""
    locked_until = col(LoginThrottle.locked_until)
    expired = (
        select(col(LoginThrottle.scope), col(LoginThrottle.subject))
        .where(
            col(LoginThrottle.reset_at) < now,
            locked_until.is_(None) | (locked_until < levels_since),
        )
        .limit(batch)
        .with_for_update(skip_locked=True)
    )
    await session.execute(
        delete(LoginThrottle).where(
            tuple_(col(LoginThrottle.scope), col(LoginThrottle.subject)).in_(expired)
        )
    )
