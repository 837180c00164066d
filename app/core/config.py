"""Settings, read once from `FIELDSYNC_*` environment variables."""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEVELOPMENT_SECRET_KEY = "fieldsync-development-key-do-not-use-in-production"  # noqa: S105
MIN_SECRET_KEY_LENGTH = 32


class Environment(StrEnum):
    development = "development"
    test = "test"
    production = "production"


class DatabaseSettings(BaseSettings):
    """What migrations need: only the database URL, so they run without the signing key."""

    model_config = SettingsConfigDict(env_prefix="FIELDSYNC_", extra="ignore")

    database_url: str = Field(
        default="sqlite+aiosqlite:///./fieldsync.db",
        description="SQLAlchemy async URL: sqlite+aiosqlite:///path or "
        "postgresql+asyncpg://user@host/db.",
    )

    db_pool_size: int = Field(default=10, ge=1, le=200, description="Connections per process.")

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


class Settings(DatabaseSettings):
    """Every tunable of the server. The README's configuration table mirrors this class."""

    env: Environment = Field(
        default=Environment.production,
        description="development, test or production. Outside development a real secret key "
        "is required.",
    )
    secret_key: SecretStr = Field(
        default=SecretStr(DEVELOPMENT_SECRET_KEY),
        description="Key that signs access tokens. At least 32 characters outside development.",
    )
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    access_token_minutes: int = Field(default=15, ge=1, le=24 * 60)
    refresh_token_days: int = Field(default=45, ge=1, le=365)
    batch_max_items: int = Field(default=2000, ge=1)
    batch_max_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    conflict_window_hours: float = Field(default=24.0, gt=0)
    clock_tolerance_seconds: float = Field(default=120.0, ge=0)
    export_org: str = Field(
        default="FieldSync",
        max_length=200,
        description="The organisation named in every export's #org column.",
    )
    export_min_count: int = Field(
        default=5,
        ge=2,
        le=100,
        description="k: in a protected settlement summary, counts from 1 to k-1 are hidden.",
    )
    duplicate_distance_m: float = Field(
        default=25.0,
        ge=0,
        le=10_000,
        description="Households of one settlement whose locations are this close are "
        "suggested as duplicates.",
    )
    pull_wait_seconds: float = Field(
        default=2.0,
        ge=0,
        le=30,
        description="How long a pull's first page waits for the writes in flight when it "
        "begins (PostgreSQL). Longer ones hold their changes back to a later pull.",
    )
    shutdown_grace_seconds: int = Field(
        default=20,
        ge=1,
        le=3600,
        description="On SIGTERM the server stops accepting connections and lets the "
        "requests in flight finish (a push gets its answer) for at most this long; then "
        "they are cancelled (nothing of theirs is committed) and the process exits.",
    )
    max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="Largest request body any endpoint accepts, as sent (1 MiB); a push may "
        "send up to batch_max_bytes. A larger declared Content-Length is refused before the "
        "body is read; a streamed body is cut off at the limit.",
    )
    login_max_failures_per_username: int = Field(
        default=5,
        ge=1,
        le=1000,
        description="Failed sign-ins for one username (known or not) before it is locked.",
    )
    login_max_failures_per_address: int = Field(
        default=20,
        ge=1,
        le=100_000,
        description="Failed sign-ins from one client address before it is locked. Higher than "
        "per username: a field office's phones may share one address.",
    )
    login_failure_window_seconds: float = Field(
        default=900,
        gt=0,
        le=7 * 86400,
        description="A username or address with no failed sign-in for this long after its "
        "last lock ends starts again from zero.",
    )
    login_lockout_seconds: float = Field(
        default=30,
        gt=0,
        le=86400,
        description="The first lock; each further failure once the limit is reached doubles it.",
    )
    login_lockout_max_seconds: float = Field(
        default=3600,
        gt=0,
        le=7 * 86400,
        description="The longest a username or address is locked at a time.",
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated addresses or networks (CIDR) of reverse proxies whose "
        "X-Forwarded-For and X-Forwarded-Proto are believed. Empty: the TCP peer is the client.",
    )
    cors_allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated origins (scheme://host[:port]) whose browser pages may "
        "call the API. Empty: no cross-origin calls.",
    )
    hsts_seconds: int = Field(
        default=0,
        ge=0,
        le=2 * 365 * 86400,
        description="When above 0, every response carries Strict-Transport-Security with this "
        "max-age. Set it only when the server is reached over HTTPS.",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        min_length=MIN_SECRET_KEY_LENGTH,
        description="Bearer token a scraper sends to read GET /metrics; without one, "
        "/metrics answers only clients on this machine (loopback).",
    )

    @field_validator("trusted_proxies", "cors_allowed_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses_or_networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(
                    f"{item!r} is not an IP address or network (such as 10.0.0.0/8)"
                ) from None
        return value

    @field_validator("cors_allowed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for item in value:
            parts = urlsplit(item)
            if (
                parts.scheme not in {"http", "https"}
                or not parts.hostname
                or item != f"{parts.scheme}://{parts.netloc}"
            ):
                raise ValueError(
                    f"{item!r} is not an origin: give scheme://host[:port], with no path, "
                    "no trailing slash and no wildcard"
                )
        return value

    @model_validator(mode="after")
    def _lockout_bounds(self) -> Settings:
        if self.login_lockout_max_seconds < self.login_lockout_seconds:
            raise ValueError(
                "FIELDSYNC_LOGIN_LOCKOUT_MAX_SECONDS must be at least "
                "FIELDSYNC_LOGIN_LOCKOUT_SECONDS"
            )
        return self

    @model_validator(mode="after")
    def _refuse_weak_secret_outside_development(self) -> Settings:
        if self.env is Environment.development:
            return self
        key = self.secret_key.get_secret_value()
        if key == DEVELOPMENT_SECRET_KEY or len(key) < MIN_SECRET_KEY_LENGTH:
            raise ValueError(
                f"FIELDSYNC_SECRET_KEY must be set to a random value of at least "
                f"{MIN_SECRET_KEY_LENGTH} characters when FIELDSYNC_ENV={self.env.value}; "
                "the built-in development key is refused"
            )
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
