"""Sign-in, token rotation, the request's principal, and account and device management."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NoReturn

from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.auth import repository, throttle
from app.auth.models import Device, RefreshToken, Role, User
from app.auth.schemas import DevicePublic, Me, TokenPair, UserPublic
from app.auth.throttle import ADDRESS, Attempt, LoginLimiter
from app.core.config import Settings
from app.core.errors import Conflict, FieldError, Invalid, NotAuthenticated, NotFound
from app.core.security import (
    InvalidTokenError,
    create_access_token,
    decode_access_token,
    hash_password,
    new_refresh_secret,
    refresh_secret_hash,
    verify_password,
)
from app.core.types import utcnow
from app.settlements import service as settlements

BAD_CREDENTIALS = "Incorrect username or password."
MIN_PASSWORD_LENGTH = 10


class RefreshTokenReused(NotAuthenticated):
    """A rotated refresh token came back: its whole family is revoked, and that must stick."""

    keep_changes = True


class SignInRefused(NotAuthenticated):
    """A failed sign-in: one answer whatever went wrong, and its audit event must stick."""

    keep_changes = True


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the user behind a valid access token, and the device if it is a phone."""

    user_id: uuid.UUID
    username: str
    full_name: str
    role: Role
    device_id: uuid.UUID | None


async def _issue_tokens(
    session: AsyncSession,
    settings: Settings,
    user: User,
    device_id: uuid.UUID | None,
    family_id: uuid.UUID,
) -> TokenPair:
    access, expires_in = create_access_token(
        settings, user_id=user.id, role=user.role, device_id=device_id
    )
    refresh, refresh_hash = new_refresh_secret()
    now = utcnow()
    await repository.add(
        session,
        RefreshToken(
            token_hash=refresh_hash,
            family_id=family_id,
            user_id=user.id,
            device_id=device_id,
            issued_at=now,
            expires_at=now + timedelta(days=settings.refresh_token_days),
        ),
    )
    return TokenPair(access_token=access, expires_in=expires_in, refresh_token=refresh)


def _as_typed(username: str) -> str:
    """A typed username as the log can hold it: no NUL, no lone surrogate, at most 64
    characters (the longest a username can be)."""
    cleaned = username.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    return cleaned[:64]


def _could_be_a_username(username: str) -> bool:
    """Whether looking the name up makes sense: one with a NUL byte or a lone surrogate
    cannot be stored, and PostgreSQL would refuse the query (a 500, not a 401)."""
    return username == _as_typed(username)


async def _refuse_sign_in(
    session: AsyncSession,
    username: str,
    user: User | None,
    device_id: uuid.UUID | None,
    reason: str,
    attempt: Attempt,
) -> NoReturn:
    """Count a failed sign-in against its address, record it (never the password typed)
    and each lock it set, then refuse it with the same answer for every reason: the
    caller learns nothing about which accounts exist."""
    await throttle.failed(session, attempt)
    await audit.record(
        session,
        action="auth.login_failed",
        entity_type="user",
        entity_id=user.id if user is not None else "",
        actor_username=_as_typed(username),
        reason=reason,
        after={"device_id": str(device_id) if device_id else None},
    )
    for scope, until in attempt.locks.items():
        seconds = round((until - attempt.at).total_seconds())
        by_address = scope == ADDRESS
        await audit.record(
            session,
            action="auth.lockout",
            entity_type="address" if by_address else "user",
            entity_id=attempt.address if by_address else (user.id if user is not None else ""),
            actor_username=_as_typed(username),
            reason=f"{attempt.failures[scope]} failed sign-ins "
            f"{'from this address' if by_address else 'for this username'}: "
            f"locked for {seconds} s.",
            after={
                "scope": scope,
                "address": attempt.address,
                "failures": attempt.failures[scope],
                "locked_until": until.isoformat(),
            },
        )
    raise SignInRefused(BAD_CREDENTIALS)


async def _known_phone(
    session: AsyncSession, user: User, device_id: uuid.UUID, attempt: Attempt
) -> Device | None:
    """The caller's phone if it is registered (None if not yet); a phone registered to
    another account, or revoked, is refused like bad credentials."""
    device = await repository.get_device(session, device_id)
    if device is None:
        return None
    # Same answer as bad credentials: a stolen phone learns nothing from it.
    if device.owner_id != user.id:
        await _refuse_sign_in(
            session, user.username, user, device_id, "phone registered to another account", attempt
        )
    if device.revoked_at is not None:
        await _refuse_sign_in(session, user.username, user, device_id, "phone revoked", attempt)
    return device


async def _register_phone(
    session: AsyncSession, user: User, device_id: uuid.UUID, attempt: Attempt
) -> None:
    """A field worker's first sign-in from a phone registers it. The same first sign-in
    sent twice at once (a retry racing the original) registers it once: the second finds
    it registered, and is let in only if it is this user's."""
    device = Device(id=device_id, owner_id=user.id, last_seen_at=utcnow())
    if not await repository.add_device_if_new(session, device):
        await _known_phone(session, user, device_id, attempt)
        return
    await audit.record(
        session,
        action="device.register",
        entity_type="device",
        entity_id=device_id,
        actor_id=user.id,
        actor_username=user.username,
        after={"owner": user.username},
    )


async def authenticate(
    session: AsyncSession,
    settings: Settings,
    limiter: LoginLimiter,
    *,
    username: str,
    password: str,
    client_id: str | None,
    address: str,
) -> TokenPair:
    """Password sign-in. `client_id` is the phone's device id; field workers must send one.
    `address` is the client's; with the username it is throttled (app/auth/throttle.py)."""
    device_id: uuid.UUID | None = None
    if client_id:
        try:
            device_id = uuid.UUID(client_id)
        except ValueError:
            message = "must be the device's UUID"
            raise Invalid(
                f"client_id {message}.",
                errors=[FieldError(field="client_id", code="uuid_parsing", message=message)],
            ) from None
    attempt = await limiter.begin(username=username, address=address, device_id=device_id)
    user = (
        await repository.get_user_by_username(session, username)
        if _could_be_a_username(username)
        else None
    )
    password_ok = await verify_password(user.password_hash if user else None, password)
    if user is None:
        await _refuse_sign_in(session, username, None, device_id, "unknown username", attempt)
    if not password_ok:
        await _refuse_sign_in(session, username, user, device_id, "wrong password", attempt)
    if not user.is_active:
        await _refuse_sign_in(session, username, user, device_id, "account disabled", attempt)
    if user.role == Role.field_worker and device_id is None:
        raise Invalid(
            "Field workers sign in from their phone: client_id (the device id) is required.",
            errors=[FieldError(field="client_id", code="missing", message="is required")],
        )
    device = await _known_phone(session, user, device_id, attempt) if device_id else None
    await throttle.succeeded(session, attempt)
    if device is not None:
        device.last_seen_at = utcnow()
    elif device_id is not None:
        await _register_phone(session, user, device_id, attempt)
    await audit.record(
        session,
        action="auth.login",
        entity_type="user",
        entity_id=user.id,
        actor_id=user.id,
        actor_username=user.username,
        after={"device_id": str(device_id) if device_id else None},
    )
    return await _issue_tokens(session, settings, user, device_id, family_id=uuid.uuid4())


async def refresh(session: AsyncSession, settings: Settings, token: str) -> TokenPair:
    """Rotate a refresh token. Reusing a rotated one revokes its whole family."""
    stored = await repository.get_refresh_token(session, refresh_secret_hash(token))
    now = utcnow()
    if stored is None or stored.revoked_at is not None or stored.expires_at <= now:
        raise NotAuthenticated("The refresh token is not valid; sign in again.")
    if not await repository.mark_rotated(session, stored.id, stored.family_id, now):
        await repository.revoke_family(session, stored.family_id, now)
        await audit.record(
            session,
            action="auth.refresh_reuse",
            entity_type="user",
            entity_id=stored.user_id,
            actor_id=stored.user_id,
            reason="A refresh token was used after it had been rotated; its family is revoked.",
        )
        raise RefreshTokenReused("The refresh token was already used; sign in again.")
    user, device = await repository.get_user_and_device(session, stored.user_id, stored.device_id)
    _require_active(user, device, stored.device_id)
    assert user is not None
    return await _issue_tokens(session, settings, user, stored.device_id, stored.family_id)


def _require_active(user: User | None, device: Device | None, device_id: uuid.UUID | None) -> None:
    if user is None or not user.is_active:
        raise NotAuthenticated("The account is disabled or unknown.")
    if device_id is not None and (device is None or device.revoked_at is not None):
        raise NotAuthenticated("This device has been revoked.")


async def principal_from_token(session: AsyncSession, settings: Settings, token: str) -> Principal:
    """Check the token, then that its user and device are still allowed, on every request."""
    try:
        claims = decode_access_token(settings, token)
    except InvalidTokenError:
        raise NotAuthenticated("The access token is invalid or expired.") from None
    user, device = await repository.get_user_and_device(session, claims.user_id, claims.device_id)
    _require_active(user, device, claims.device_id)
    assert user is not None
    if user.role != claims.role:
        raise NotAuthenticated("The account's role changed; sign in again.")
    return Principal(
        user_id=user.id,
        username=user.username,
        full_name=user.full_name,
        role=Role(user.role),
        device_id=claims.device_id,
    )


async def create_user(
    session: AsyncSession,
    *,
    username: str,
    role: Role,
    password: str,
    full_name: str = "",
    actor: str = "cli",
) -> User:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Invalid(f"The password must have at least {MIN_PASSWORD_LENGTH} characters.")
    if await repository.get_user_by_username(session, username) is not None:
        raise Conflict(f"A user named {username!r} already exists.")
    user = User(
        username=username,
        role=role.value,
        full_name=full_name,
        password_hash=hash_password(password),
    )
    await repository.add(session, user)
    await audit.record(
        session,
        action="user.create",
        entity_type="user",
        entity_id=user.id,
        actor_username=actor,
        after={"username": username, "role": role.value, "full_name": full_name},
    )
    return user


async def get_user_by_username(session: AsyncSession, username: str) -> User:
    user = await repository.get_user_by_username(session, username)
    if user is None:
        raise NotFound(f"No user named {username!r}.")
    return user


async def list_users(session: AsyncSession) -> Sequence[User]:
    return await repository.list_users(session)


async def user_listing(session: AsyncSession) -> list[UserPublic]:
    assigned = await settlements.all_assignments(session)
    return [_user_public(user, assigned.get(user.id, [])) for user in await list_users(session)]


def _user_public(user: User, pcodes: Sequence[str]) -> UserPublic:
    return UserPublic(
        id=user.id,
        username=user.username,
        full_name=user.full_name,
        role=user.role,
        active=user.is_active,
        settlements=list(pcodes),
    )


async def set_active(
    session: AsyncSession,
    user: User,
    *,
    active: bool,
    reason: str,
    actor_id: uuid.UUID | None = None,
    actor_username: str = "cli",
) -> UserPublic:
    """Disable an account (every call it makes is refused from its next one, and its
    refresh tokens are revoked, so enabling it again needs a new sign-in) or enable it.
    Disabling a disabled account, or enabling an active one, changes nothing and is
    not audited.

    No one can disable their own account, nor the last active administrator (from the
    command line either): no one could enable anyone again. Two administrators
    disabling each other at once cannot both succeed: the active administrators' rows
    are locked in id order, and the second sees the first's change.
    """
    if not active and user.id == actor_id:
        raise Conflict("You cannot disable your own account.")
    if not active and user.role == Role.admin:
        if await repository.lock_active_admins(session) == [user.id]:
            raise Conflict("This is the last active administrator; enable or create another first.")
        await session.refresh(user)  # as the lock let it be seen
    if not (active and user.is_active):
        # Every disable (a sign-in that raced an earlier one may have added a token), and
        # an enable that changes something (a token from before it stays dead).
        await repository.revoke_user_tokens(session, user.id, utcnow())
    if user.is_active != active:
        user.is_active = active
        await session.flush()
        await audit.record(
            session,
            action="user.enable" if active else "user.disable",
            entity_type="user",
            entity_id=user.id,
            actor_id=actor_id,
            actor_username=actor_username,
            reason=reason,
            before={"active": not active},
            after={"active": active},
        )
    return _user_public(user, await settlements.assigned_pcodes(session, user.id))


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> User:
    user = await repository.get_user(session, user_id)
    if user is None:
        raise NotFound(f"No user {user_id}.")
    return user


def _device_public(device: Device, owner: str) -> DevicePublic:
    return DevicePublic(
        id=device.id,
        owner=owner,
        label=device.label,
        first_seen_at=device.first_seen_at,
        last_seen_at=device.last_seen_at,
        last_sync_at=device.last_sync_at,
        app_version=device.app_version,
        revoked_at=device.revoked_at,
    )


async def device_listing(session: AsyncSession) -> list[DevicePublic]:
    return [_device_public(d, owner) for d, owner in await repository.list_devices(session)]


async def describe(session: AsyncSession, principal: Principal) -> Me:
    return Me(
        id=principal.user_id,
        username=principal.username,
        full_name=principal.full_name,
        role=principal.role.value,
        device_id=principal.device_id,
        settlements=await settlements.assigned_pcodes(session, principal.user_id),
    )


async def revoke_device(
    session: AsyncSession,
    device_id: uuid.UUID,
    *,
    reason: str,
    actor_id: uuid.UUID | None = None,
    actor_username: str = "cli",
) -> DevicePublic:
    """Revoke a phone: its tokens stop working on the next request, refresh included."""
    device = await repository.get_device(session, device_id)
    if device is None:
        raise NotFound(f"No device {device_id}.")
    if device.revoked_at is None:
        device.revoked_at = utcnow()
        await session.flush()
        await audit.record(
            session,
            action="device.revoke",
            entity_type="device",
            entity_id=device_id,
            actor_id=actor_id,
            actor_username=actor_username,
            reason=reason,
            before={"revoked_at": None},
            after={"revoked_at": device.revoked_at.isoformat()},
        )
    owner = await repository.get_user(session, device.owner_id)
    return _device_public(device, owner.username if owner else "")


#: A device's last-seen time is rewritten at most this often: a pull then writes nothing.
SEEN_RESOLUTION = timedelta(minutes=1)


async def record_seen(session: AsyncSession, device_id: uuid.UUID, at: datetime) -> None:
    """Note when a phone last called the server (a pull), to the minute."""
    device = await repository.get_device(session, device_id)
    if device is not None and (
        device.last_seen_at is None or at - device.last_seen_at >= SEEN_RESOLUTION
    ):
        device.last_seen_at = at


async def record_sync(
    session: AsyncSession, device_id: uuid.UUID, at: datetime, app_version: str | None
) -> None:
    """Note when a phone last synced, and with which app version."""
    device = await repository.get_device(session, device_id)
    if device is not None:
        device.last_sync_at = at
        device.last_seen_at = at
        if app_version:
            device.app_version = app_version
