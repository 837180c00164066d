"""Typed dependency aliases shared by every router."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.core.config import Settings
from app.core.db import SessionDep


async def get_app_settings(request: Request) -> Settings:
    """Async on purpose: FastAPI runs a plain `def` dependency in a worker thread."""
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]

__all__ = ["SessionDep", "SettingsDep"]
