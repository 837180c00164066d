"""Request and response models of the auth and device endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class TokenPair(BaseModel):
    """What a successful sign-in or refresh returns."""

    access_token: str = Field(description="Bearer token for the Authorization header.")
    token_type: str = Field(default="bearer", examples=["bearer"])
    expires_in: int = Field(description="Seconds until the access token expires.", examples=[900])
    refresh_token: str = Field(
        description="Long-lived token for POST /api/v1/auth/refresh. Each use replaces it."
    )


class RefreshRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"refresh_token": "kq3V0p0wQm3o1m1o2Yb6s6JtI2rE9Xq4"}]}
    )

    refresh_token: str = Field(min_length=1, max_length=512)


class Me(BaseModel):
    """The signed-in account, as the token identifies it."""

    id: uuid.UUID
    username: str = Field(examples=["o.kovalenko"])
    full_name: str = Field(examples=["Оксана Коваленко"])
    role: str = Field(examples=["supervisor"])
    device_id: uuid.UUID | None = None
    settlements: list[str] = Field(
        description="P-codes of the settlements assigned to this account.",
        examples=[["UA6308011001"]],
    )


class DevicePublic(BaseModel):
    id: uuid.UUID
    owner: str = Field(examples=["m.shevchenko"])
    label: str
    first_seen_at: datetime
    last_seen_at: datetime | None
    last_sync_at: datetime | None
    app_version: str | None
    revoked_at: datetime | None


class RevokeRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=2000, examples=["Phone lost at a checkpoint."])
