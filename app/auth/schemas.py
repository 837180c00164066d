"""Request and response models of the auth and device endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class TokenPair(BaseModel):
    """What a successful sign-in or refresh returns."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "access_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIuLi4ifQ.c2ln",
                    "token_type": "bearer",
                    "expires_in": 900,
                    "refresh_token": "kq3V0p0wQm3o1m1o2Yb6s6JtI2rE9Xq4",
                }
            ]
        }
    )

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

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "8e2f4a6c-1b3d-4e5f-9a7b-2c4d6e8f0a1b",
                    "username": "o.kovalenko",
                    "full_name": "Оксана Коваленко",
                    "role": "supervisor",
                    "device_id": None,
                    "settlements": ["UA6308011001", "UA6308013001"],
                }
            ]
        }
    )

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
    """A phone that signed in, whose it is, and when it was last heard from."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "5d0c3b8e-1f2a-4c6d-9e7b-8a9f0e1d2c3b",
                    "owner": "m.shevchenko",
                    "label": "Samsung A14 (Куп'янськ-Вузловий)",
                    "first_seen_at": "2026-10-02T06:40:00Z",
                    "last_seen_at": "2026-11-20T18:02:11Z",
                    "last_sync_at": "2026-11-20T18:02:11Z",
                    "app_version": "1.4.2",
                    "revoked_at": None,
                }
            ]
        }
    )

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


class UserPublic(BaseModel):
    """An account: who, which role, whether it may sign in, and its settlements."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "3b9d2f71-6c4e-4a8b-9f1d-0e2c5a7b8d94",
                    "username": "m.shevchenko",
                    "full_name": "Марія Шевченко",
                    "role": "field_worker",
                    "active": True,
                    "settlements": ["UA6308013001"],
                }
            ]
        }
    )

    id: uuid.UUID
    username: str
    full_name: str
    role: str
    active: bool = Field(description="False once disabled: every call is refused.")
    settlements: list[str] = Field(description="Assigned settlements' P-codes.")


class AccountChange(BaseModel):
    reason: str = Field(
        min_length=1,
        max_length=2000,
        examples=["Contract ended; the phone was handed back to the office."],
    )
