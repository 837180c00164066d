"""Passwords (argon2id), access tokens (JWT, pinned algorithm) and refresh-token secrets."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from jose import JWTError, jwt

from app.core.config import Settings

_hasher = PasswordHasher()
# Verified against when the username is unknown, so that a wrong username costs the
# same time as a wrong password and timing does not reveal which accounts exist.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))

ACCESS_TOKEN_TYPE = "access"  # noqa: S105


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _verify(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(password_hash: str | None, password: str) -> bool:
    """Check a password without blocking the event loop; `None` burns the same time and fails."""
    return await asyncio.to_thread(_verify, password_hash, password)


class InvalidTokenError(Exception):
    """The token is malformed, forged, expired or missing a required claim."""


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: uuid.UUID
    role: str
    device_id: uuid.UUID | None
    expires_at: datetime


def create_access_token(
    settings: Settings,
    *,
    user_id: uuid.UUID,
    role: str,
    device_id: uuid.UUID | None,
    now: datetime | None = None,
) -> tuple[str, int]:
    """A signed access token and its lifetime in seconds."""
    issued = now or datetime.now(UTC)
    lifetime = timedelta(minutes=settings.access_token_minutes)
    claims = {
        "sub": str(user_id),
        "role": role,
        "dev": str(device_id) if device_id else None,
        "typ": ACCESS_TOKEN_TYPE,
        "iat": int(issued.timestamp()),
        "exp": int((issued + lifetime).timestamp()),
        "jti": uuid.uuid4().hex,
    }
    token = jwt.encode(
        claims, settings.secret_key.get_secret_value(), algorithm=settings.jwt_algorithm
    )
    return token, int(lifetime.total_seconds())


def decode_access_token(settings: Settings, token: str) -> AccessClaims:
    """Verify signature, algorithm and expiry, and require `exp`, `sub` and the role."""
    try:
        claims = jwt.decode(
            token,
            settings.secret_key.get_secret_value(),
            algorithms=[settings.jwt_algorithm],
            options={"require_exp": True, "require_sub": True, "require_iat": True},
        )
    except JWTError as exc:
        raise InvalidTokenError(str(exc)) from exc
    role, device = claims.get("role"), claims.get("dev")
    if claims.get("typ") != ACCESS_TOKEN_TYPE or not isinstance(role, str):
        raise InvalidTokenError("not an access token")
    try:
        return AccessClaims(
            user_id=uuid.UUID(claims["sub"]),
            role=role,
            device_id=uuid.UUID(device) if device else None,
            expires_at=datetime.fromtimestamp(claims["exp"], UTC),
        )
    except (TypeError, ValueError) as exc:
        raise InvalidTokenError("malformed claims") from exc


def new_refresh_secret() -> tuple[str, str]:
    """A fresh opaque refresh token and the SHA-256 hash under which it is stored."""
    token = secrets.token_urlsafe(32)
    return token, refresh_secret_hash(token)


def refresh_secret_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
