from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import Role
from tests.factories import bearer, make_user, tokens_for


async def test_sign_in_and_me(client: httpx.AsyncClient, session: AsyncSession) -> None:
    user = await make_user(session, Role.supervisor)
    tokens = await tokens_for(client, user)
    response = await client.get("/api/v1/auth/me", headers=bearer(tokens["access_token"]))
    assert response.status_code == 200, response.text
    assert response.json()["username"] == user.username
