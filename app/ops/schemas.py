"""Probe responses."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Health(BaseModel):
    status: str = Field(examples=["ok"])


class Readiness(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "ready",
                    "database": "reachable",
                    "migration": "0003_pull_feed",
                    "expected_migration": "0003_pull_feed",
                }
            ]
        }
    )

    status: str = Field(examples=["ready"])
    database: str = Field(description="reachable or unreachable", examples=["reachable"])
    migration: str | None = Field(description="The database's migration revision.")
    expected_migration: str | None = Field(description="The code's head revision.")
