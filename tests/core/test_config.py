"""Settings refuse a default or weak signing key outside development."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.core.config import DEVELOPMENT_SECRET_KEY, Environment, Settings


@pytest.mark.parametrize("env", [Environment.production, Environment.test])
def test_default_secret_key_is_refused_outside_development(
    env: Environment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FIELDSYNC_SECRET_KEY", raising=False)
    with pytest.raises(ValidationError, match="FIELDSYNC_SECRET_KEY"):
        Settings(env=env)


@pytest.mark.parametrize("env", [Environment.production, Environment.test])
def test_explicit_development_key_and_short_keys_are_refused(env: Environment) -> None:
    for key in (DEVELOPMENT_SECRET_KEY, "short-key"):
        with pytest.raises(ValidationError, match="at least 32 characters"):
            Settings(env=env, secret_key=key)


def test_environment_variables_configure_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIELDSYNC_ENV", "production")
    monkeypatch.setenv("FIELDSYNC_SECRET_KEY", "k" * 40)
    monkeypatch.setenv("FIELDSYNC_REFRESH_TOKEN_DAYS", "60")
    settings = Settings()
    assert settings.env is Environment.production
    assert settings.refresh_token_days == 60


def test_missing_key_in_production_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIELDSYNC_ENV", "production")
    monkeypatch.delenv("FIELDSYNC_SECRET_KEY", raising=False)
    with pytest.raises(ValidationError, match="FIELDSYNC_SECRET_KEY"):
        Settings()


def test_development_accepts_the_built_in_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FIELDSYNC_SECRET_KEY", raising=False)
    settings = Settings(env=Environment.development)
    assert settings.secret_key.get_secret_value() == DEVELOPMENT_SECRET_KEY


def test_defaults_match_the_protocol() -> None:
    settings = Settings(env=Environment.development)
    assert settings.database_url.startswith("sqlite+aiosqlite:///")
    assert settings.refresh_token_days >= 14  # phones are offline for weeks
    assert settings.conflict_window_hours == 24.0
    assert settings.jwt_algorithm == "HS256"
