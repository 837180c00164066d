"""A phone's first sign-in sent twice at once (a retry racing the original on a bad
link) registers the phone once and answers both: never a 500 from the second insert.
Found by the soak benchmark (bench/soak.py), whose links send some requests twice."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.audit.models import AuditEvent
from app.auth.models import Device
from tests.factories import make_user, read_fresh, sign_in


async def test_two_first_sign_ins_of_one_phone_at_once_both_succeed(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session)
    device_id = uuid.uuid4()
    first, second = await asyncio.gather(
        sign_in(client, user.username, client_id=device_id),
        sign_in(client, user.username, client_id=device_id),
    )
    assert first.status_code == 200, first.text
    assert second.status_code == 200, second.text
    devices = await read_fresh(session, select(Device).where(col(Device.id) == device_id))
    assert [d.owner_id for d in devices] == [user.id]
    registered = await read_fresh(
        session,
        select(AuditEvent).where(
            col(AuditEvent.action) == "device.register",
            col(AuditEvent.entity_id) == str(device_id),
        ),
    )
    assert len(registered) == 1
