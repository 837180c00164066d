"""Who is calling, and the role dependencies: `CurrentPrincipal`, `FieldWorker`, `Supervisor`..."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from app.auth import service
from app.auth.models import Role
from app.auth.service import Principal
from app.auth.throttle import LoginLimiter
from app.core.deps import SessionDep, SettingsDep
from app.core.errors import Forbidden, NotAuthenticated

TOKEN_URL = "/api/v1/auth/token"  # noqa: S105

oauth2_scheme = OAuth2PasswordBearer(
    tokenUrl=TOKEN_URL,
    auto_error=False,
    description="Sign in with your username and password. Phones also send their device id "
    "as client_id.",
)


async def get_principal(
    session: SessionDep, settings: SettingsDep, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> Principal:
    if not token:
        raise NotAuthenticated("Sign in first: this call needs a bearer token.")
    return await service.principal_from_token(session, settings, token)


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def require_roles(*roles: Role) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency that lets only `roles` through; everyone else gets 403."""
    allowed = frozenset(roles)
    names = " or ".join(r.value for r in roles)

    async def dependency(principal: CurrentPrincipal) -> Principal:
        if principal.role not in allowed:
            raise Forbidden(f"This call is for the {names} role; you are {principal.role.value}.")
        return principal

    return dependency


FieldWorker = Annotated[Principal, Depends(require_roles(Role.field_worker))]
Supervisor = Annotated[Principal, Depends(require_roles(Role.supervisor))]
Partner = Annotated[Principal, Depends(require_roles(Role.partner))]
Admin = Annotated[Principal, Depends(require_roles(Role.admin))]
#: Supervisors, and administrators who stand in for them.
Reviewer = Annotated[Principal, Depends(require_roles(Role.supervisor, Role.admin))]


async def get_login_limiter(request: Request) -> LoginLimiter:
    """The app's login limiter (created with the app: see `create_app`)."""
    limiter: LoginLimiter = request.app.state.login_limiter
    return limiter


async def get_client_address(request: Request) -> str:
    """The caller's address: the TCP peer, or, when the peer is a trusted proxy
    (FIELDSYNC_TRUSTED_PROXIES), the client it forwarded for (set by the app's proxy
    headers middleware). X-Forwarded-For from anyone else is ignored."""
    return request.client.host if request.client else "unknown"


LoginLimiterDep = Annotated[LoginLimiter, Depends(get_login_limiter)]
ClientAddress = Annotated[str, Depends(get_client_address)]
