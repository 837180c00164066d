"""Sign-in, token refresh, the caller's own account, and device and account administration."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.security import OAuth2PasswordRequestForm
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import service
from app.auth.deps import Admin, ClientAddress, CurrentPrincipal, LoginLimiterDep
from app.auth.schemas import (
    AccountChange,
    DevicePublic,
    Me,
    RefreshRequest,
    RevokeRequest,
    TokenPair,
    UserPublic,
)
from app.auth.service import Principal
from app.core.deps import SessionDep, SettingsDep
from app.core.openapi import errors

router = APIRouter()
devices_router = APIRouter()
users_router = APIRouter()


@router.post(
    "/token",
    operation_id="auth:token",
    summary="Sign in",
    response_model=TokenPair,
    responses=errors(400, 401, 413, 415, 422, 429),
    openapi_extra={
        "requestBody": {
            "content": {
                "application/x-www-form-urlencoded": {
                    "examples": {
                        "supervisor": {
                            "summary": "A supervisor at a desk",
                            "value": {"username": "o.kovalenko", "password": "••••••••"},
                        },
                        "phone": {
                            "summary": "A field worker's phone",
                            "value": {
                                "username": "m.shevchenko",
                                "password": "••••••••",
                                "client_id": "5d0c3b8e-1f2a-4c6d-9e7b-8a9f0e1d2c3b",
                            },
                        },
                    }
                }
            }
        }
    },
    description="Sign in with a username and password (OAuth2 password form). A phone also "
    "sends its device id as `client_id`; a field worker's first sign-in from a phone "
    "registers that phone. A wrong username, a wrong password and a disabled account all "
    "get the same answer. After 5 failed sign-ins for one username (whether it exists or "
    "not) or 20 from one address, within 15 minutes, the next attempt is refused with 429 "
    "until `Retry-After` seconds have passed: 30 seconds at first, twice as long after each "
    "further failure, at most an hour (the server's defaults), and a lock within a day of the "
    "last one is twice as long again. A successful sign-in clears its username's count. An "
    "IPv6 address is counted by its /64 network. A phone's sign-in whose `client_id` is a "
    "registered device of that username is not refused by its address's lock.",
)
async def token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    session: SessionDep,
    settings: SettingsDep,
    limiter: LoginLimiterDep,
    address: ClientAddress,
) -> TokenPair:
    return await service.authenticate(
        session,
        settings,
        limiter,
        username=form.username,
        password=form.password,
        client_id=form.client_id,
        address=address,
    )


@router.post(
    "/refresh",
    operation_id="auth:refresh",
    summary="Renew tokens",
    response_model=TokenPair,
    responses=errors(400, 401, 413, 415, 422),
    description="Trade a refresh token for a new access token and a new refresh token. Each "
    "refresh token works once: presenting one a second time signs out every token "
    "descended from the same sign-in.",
)
async def refresh(body: RefreshRequest, session: SessionDep, settings: SettingsDep) -> TokenPair:
    return await service.refresh(session, settings, body.refresh_token)


@router.get(
    "/me",
    operation_id="auth:me",
    summary="Who am I",
    response_model=Me,
    responses=errors(401),
    description="The signed-in account, its role and its assigned settlements.",
)
async def me(principal: CurrentPrincipal, session: SessionDep) -> Me:
    return await service.describe(session, principal)


@devices_router.get(
    "",
    operation_id="devices:list",
    summary="List phones",
    response_model=list[DevicePublic],
    responses=errors(401, 403),
    description="Every registered phone, its owner, when it last synced, and whether it is "
    "revoked. Administrators only.",
)
async def list_devices(_: Admin, session: SessionDep) -> list[DevicePublic]:
    return await service.device_listing(session)


@devices_router.post(
    "/{device_id}/revoke",
    operation_id="devices:revoke",
    summary="Revoke a lost or stolen phone",
    response_model=DevicePublic,
    responses=errors(400, 401, 403, 404, 413, 415, 422),
    description="Stop a phone from syncing at once: its next call is refused, and its "
    "refresh token no longer works. Give the reason; it goes to the audit log.",
)
async def revoke_device(
    device_id: uuid.UUID, body: RevokeRequest, principal: Admin, session: SessionDep
) -> DevicePublic:
    return await service.revoke_device(
        session,
        device_id,
        reason=body.reason,
        actor_id=principal.user_id,
        actor_username=principal.username,
    )


@users_router.get(
    "",
    operation_id="users:list",
    summary="List accounts",
    response_model=list[UserPublic],
    responses=errors(401, 403),
    description="Every account, its role, its settlements and whether it may sign in. "
    "Administrators only.",
)
async def list_users(_: Admin, session: SessionDep) -> list[UserPublic]:
    return await service.user_listing(session)


@users_router.post(
    "/{user_id}/disable",
    operation_id="users:disable",
    summary="Disable an account",
    response_model=UserPublic,
    responses=errors(400, 401, 403, 404, 409, 413, 415, 422),
    description="Stop an account at once, on every phone and browser: its next call is "
    "refused (401), it cannot sign in, and its refresh tokens are revoked, so enabling it "
    "again needs a new sign-in. For someone who left, or whose password may be known to "
    "others; for one lost phone, revoke the device instead. You cannot disable your own "
    "account, nor the last active administrator (409). Give the reason; it goes to the "
    "audit log.",
)
async def disable_user(
    user_id: uuid.UUID, body: AccountChange, principal: Admin, session: SessionDep
) -> UserPublic:
    return await _set_active(session, principal, user_id, body, active=False)


@users_router.post(
    "/{user_id}/enable",
    operation_id="users:enable",
    summary="Enable an account again",
    response_model=UserPublic,
    responses=errors(400, 401, 403, 404, 413, 415, 422),
    description="Let a disabled account sign in again. Its old tokens stay revoked. Give "
    "the reason; it goes to the audit log.",
)
async def enable_user(
    user_id: uuid.UUID, body: AccountChange, principal: Admin, session: SessionDep
) -> UserPublic:
    return await _set_active(session, principal, user_id, body, active=True)


async def _set_active(
    session: AsyncSession,
    principal: Principal,
    user_id: uuid.UUID,
    body: AccountChange,
    *,
    active: bool,
) -> UserPublic:
    return await service.set_active(
        session,
        await service.get_user(session, user_id),
        active=active,
        reason=body.reason,
        actor_id=principal.user_id,
        actor_username=principal.username,
    )
