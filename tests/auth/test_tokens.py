"""Access tokens against GET /api/v1/auth/me: forged, expired, incomplete or stale ones fail.

Every refused token here has a twin built the same way with the one defect removed that
is accepted, so a test cannot pass merely because the token was built wrong.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from jose import jwt
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import Role, User
from app.core.config import Settings
from app.core.security import create_access_token
from app.core.types import utcnow
from tests.factories import assert_problem, bearer, make_user, tokens_for

ME = "/api/v1/auth/me"
INVALID_TOKEN = "The access token is invalid or expired."
NO_TOKEN = "Sign in first: this call needs a bearer token."


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _secret(settings: Settings) -> str:
    return settings.secret_key.get_secret_value()


def claims_for(user: User, **overrides: Any) -> dict[str, Any]:
    """The claims the app puts in an access token for `user` (no device), valid for 15 min."""
    now = utcnow()
    claims: dict[str, Any] = {
        "sub": str(user.id),
        "role": user.role,
        "dev": None,
        "typ": "access",
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=15)).timestamp()),
        "jti": uuid.uuid4().hex,
    }
    claims.update(overrides)
    return claims


def hand_made_token(header: dict[str, Any], claims: dict[str, Any], key: str | None) -> str:
    """A JWS built without a JWT library: HMAC-SHA256 with `key`, or no signature at all."""
    signing_input = ".".join(
        _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
    )
    if key is None:
        return f"{signing_input}."
    digest = hmac.new(key.encode(), signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(digest)}"


def with_payload(token: str, **changes: Any) -> str:
    """`token` with claims changed in its payload segment; header and signature kept."""
    header, payload, signature = token.split(".")
    claims = json.loads(_b64url_decode(payload))
    claims.update(changes)
    new_payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    return f"{header}.{new_payload}.{signature}"


async def assert_refused(
    client: httpx.AsyncClient, token: str, detail: str = INVALID_TOKEN
) -> None:
    response = await client.get(ME, headers=bearer(token))
    assert_problem(response, 401, detail)
    assert response.headers["www-authenticate"] == "Bearer"


async def assert_accepted(client: httpx.AsyncClient, token: str, user: User) -> None:
    response = await client.get(ME, headers=bearer(token))
    assert response.status_code == 200, response.text
    assert response.json()["id"] == str(user.id)
    assert response.json()["role"] == user.role


async def test_expired_token_is_refused(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    user = await make_user(session, Role.supervisor)
    an_hour_ago = utcnow() - timedelta(hours=1)
    a_minute_ago = utcnow() - timedelta(minutes=1)
    assert settings.access_token_minutes < 60

    expired, _ = create_access_token(
        settings, user_id=user.id, role=user.role, device_id=None, now=an_hour_ago
    )
    fresh, _ = create_access_token(
        settings, user_id=user.id, role=user.role, device_id=None, now=a_minute_ago
    )

    await assert_refused(client, expired)
    await assert_accepted(client, fresh, user)


async def test_expired_token_crafted_with_jose_is_refused(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    user = await make_user(session, Role.supervisor)
    past = int((utcnow() - timedelta(minutes=5)).timestamp())

    expired = jwt.encode(claims_for(user, exp=past), _secret(settings), algorithm="HS256")

    await assert_refused(client, expired)
    await assert_accepted(client, jwt.encode(claims_for(user), _secret(settings)), user)


async def test_unsigned_alg_none_token_is_refused(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    user = await make_user(session, Role.supervisor)
    claims = claims_for(user)

    unsigned = hand_made_token({"alg": "none", "typ": "JWT"}, claims, key=None)
    signed = hand_made_token({"alg": "HS256", "typ": "JWT"}, claims, key=_secret(settings))

    assert unsigned.endswith(".")
    await assert_refused(client, unsigned)
    await assert_accepted(client, signed, user)


async def test_token_signed_with_another_key_is_refused(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    user = await make_user(session, Role.supervisor)
    claims = claims_for(user)
    other_key = "another-signing-key-" + "y" * 32
    assert other_key != _secret(settings)

    await assert_refused(client, jwt.encode(claims, other_key, algorithm="HS256"))
    await assert_accepted(client, jwt.encode(claims, _secret(settings), algorithm="HS256"), user)


async def test_tampered_role_claim_is_refused(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session, Role.supervisor)
    token = (await tokens_for(client, user))["access_token"]
    await assert_accepted(client, token, user)

    tampered = with_payload(token, role="admin")

    assert tampered.split(".")[2] == token.split(".")[2]
    # The signature check refuses it, not the later role-changed check.
    await assert_refused(client, tampered)


async def test_tampered_subject_pointing_at_an_admin_is_refused(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session, Role.supervisor)
    admin = await make_user(session, Role.admin)
    token = (await tokens_for(client, user))["access_token"]

    # Were the signature not checked, this would be a valid admin token.
    tampered = with_payload(token, sub=str(admin.id), role="admin")

    await assert_refused(client, tampered)


@pytest.mark.parametrize("claim", ["exp", "sub", "role", "iat", "typ"])
async def test_token_missing_a_required_claim_is_refused(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings, claim: str
) -> None:
    user = await make_user(session, Role.supervisor)
    claims = claims_for(user)
    del claims[claim]

    await assert_refused(client, jwt.encode(claims, _secret(settings), algorithm="HS256"))


async def test_token_with_every_claim_signed_with_the_right_key_is_accepted(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings
) -> None:
    """The control for the tests above: their tokens differ from this one by one defect."""
    user = await make_user(session, Role.supervisor)

    await assert_accepted(client, jwt.encode(claims_for(user), _secret(settings)), user)


@pytest.mark.parametrize("algorithm", ["HS384", "HS512"])
async def test_token_with_another_hmac_algorithm_is_refused(
    client: httpx.AsyncClient, session: AsyncSession, settings: Settings, algorithm: str
) -> None:
    assert settings.jwt_algorithm == "HS256"
    user = await make_user(session, Role.supervisor)
    claims = claims_for(user)

    other = jwt.encode(claims, _secret(settings), algorithm=algorithm)

    assert json.loads(_b64url_decode(other.split(".")[0]))["alg"] == algorithm
    await assert_refused(client, other)
    await assert_accepted(client, jwt.encode(claims, _secret(settings), algorithm="HS256"), user)


async def test_no_token_is_refused_with_a_bearer_challenge(client: httpx.AsyncClient) -> None:
    response = await client.get(ME)

    assert_problem(response, 401, NO_TOKEN)
    assert response.headers["www-authenticate"] == "Bearer"


async def test_other_authorization_scheme_counts_as_no_token(client: httpx.AsyncClient) -> None:
    response = await client.get(ME, headers={"Authorization": "Basic dXNlcjpwYXNz"})

    assert_problem(response, 401, NO_TOKEN)
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("garbage", ["garbage", "a.b.c", "eyJhbGciOiJIUzI1NiJ9..", "Bearer x"])
async def test_garbage_token_is_refused_with_a_bearer_challenge(
    client: httpx.AsyncClient, garbage: str
) -> None:
    await assert_refused(client, garbage)


async def test_user_disabled_after_sign_in_is_refused_on_the_next_call(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session, Role.supervisor)
    token = (await tokens_for(client, user))["access_token"]
    await assert_accepted(client, token, user)

    user.is_active = False
    session.add(user)
    await session.commit()

    await assert_refused(client, token, "The account is disabled or unknown.")


async def test_user_whose_role_changed_is_refused_on_the_next_call(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    user = await make_user(session, Role.supervisor)
    token = (await tokens_for(client, user))["access_token"]
    await assert_accepted(client, token, user)

    user.role = Role.partner.value
    session.add(user)
    await session.commit()

    await assert_refused(client, token, "The account's role changed; sign in again.")
