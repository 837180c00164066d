"""Each role's dependency refuses the other roles.

A router with one route per role alias of app/auth/deps.py is mounted on the test app;
every role then calls every route.
"""

from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.deps import Admin, FieldWorker, Partner, Reviewer, Supervisor
from app.auth.models import Role
from app.auth.service import Principal
from tests.factories import assert_problem, bearer, make_user, tokens_for

PREFIX = "/_test/roles"

roles_router = APIRouter(prefix=PREFIX)


def _answer(principal: Principal) -> dict[str, str]:
    return {"username": principal.username, "role": principal.role.value}


@roles_router.get("/field-worker")
async def field_worker_route(principal: FieldWorker) -> dict[str, str]:
    return _answer(principal)


@roles_router.get("/supervisor")
async def supervisor_route(principal: Supervisor) -> dict[str, str]:
    return _answer(principal)


@roles_router.get("/partner")
async def partner_route(principal: Partner) -> dict[str, str]:
    return _answer(principal)


@roles_router.get("/admin")
async def admin_route(principal: Admin) -> dict[str, str]:
    return _answer(principal)


@roles_router.get("/reviewer")
async def reviewer_route(principal: Reviewer) -> dict[str, str]:
    return _answer(principal)


#: route -> (the roles it lets through, how its refusal names them)
ROUTES: dict[str, tuple[frozenset[Role], str]] = {
    "/field-worker": (frozenset({Role.field_worker}), "field_worker"),
    "/supervisor": (frozenset({Role.supervisor}), "supervisor"),
    "/partner": (frozenset({Role.partner}), "partner"),
    "/admin": (frozenset({Role.admin}), "admin"),
    "/reviewer": (frozenset({Role.supervisor, Role.admin}), "supervisor or admin"),
}


def test_every_role_is_allowed_somewhere_and_refused_somewhere() -> None:
    """The table above covers every role, so the parametrized test below covers them too."""
    allowed = [roles for roles, _ in ROUTES.values()]
    assert set().union(*allowed) == set(Role)
    assert all(any(role not in roles for roles in allowed) for role in Role)
    paths = {route.path for route in roles_router.routes if isinstance(route, APIRoute)}
    assert paths == {PREFIX + p for p in ROUTES}


@pytest.mark.parametrize("role", list(Role))
async def test_each_role_dependency_refuses_the_other_roles(
    app: FastAPI, client: httpx.AsyncClient, session: AsyncSession, role: Role
) -> None:
    app.include_router(roles_router)
    user = await make_user(session, role)
    token = (await tokens_for(client, user))["access_token"]

    for path, (allowed, names) in ROUTES.items():
        response = await client.get(PREFIX + path, headers=bearer(token))
        if role in allowed:
            assert response.status_code == 200, (path, response.text)
            assert response.json() == {"username": user.username, "role": role.value}
        else:
            assert_problem(
                response, 403, f"This call is for the {names} role; you are {role.value}."
            )


async def test_role_routes_without_a_token_are_unauthenticated_not_forbidden(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    app.include_router(roles_router)

    for path in ROUTES:
        response = await client.get(PREFIX + path)
        assert_problem(response, 401, "Sign in first: this call needs a bearer token.")
        assert response.headers["www-authenticate"] == "Bearer"
