"""Queries on users, devices and refresh tokens. Flush, never commit."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import exists, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlmodel import col, select

from app.auth.models import Device, RefreshToken, User


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


async def add(session: AsyncSession, row: User | Device | RefreshToken) -> None:
    session.add(row)
    await session.flush()
