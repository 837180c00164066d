"""Settings, read once from `FIELDSYNC_*` environment variables."""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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
