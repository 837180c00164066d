"""Accounts and phones for the fault tests. Everything is synthetic."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.auth.models import Role, User
from app.core.db import create_engine
from bench.device import Backoff, Device
from tests.conftest import make_settings
from tests.factories import PASSWORD, make_settlement, make_user

#: Quick retries: a test's server comes back within seconds.
QUICK = Backoff(base=0.02, cap=0.25, give_up_after=60)


@asynccontextmanager
async def engine_for(url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(make_settings(url))
    try:
        yield engine
    finally:
        await engine.dispose()


async def seed(
    engine: AsyncEngine, settlements: list[str], workers: int, *, role: Role = Role.field_worker
) -> list[User]:
    """The settlements, and `workers` accounts assigned to all of them."""
    async with AsyncSession(engine, expire_on_commit=False) as session:
        for pcode in settlements:
            await make_settlement(session, pcode)
        return [await make_user(session, role, settlements=settlements) for _ in range(workers)]


async def make_admin(engine: AsyncEngine) -> User:
    async with AsyncSession(engine, expire_on_commit=False) as session:
        return await make_user(session, Role.admin)


def phone(base_url: str, user: User, seed: int, **options: Any) -> Device:
    """A simulated phone of this user, with quick retries unless told otherwise."""
    options.setdefault("backoff", QUICK)
    return Device(base_url, user.username, PASSWORD, seed=seed, **options)
