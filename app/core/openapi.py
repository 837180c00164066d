"""OpenAPI helpers: problem+json error responses, and the committed-schema writer."""

from __future__ import annotations

import json
from collections.abc import Sequence
from http import HTTPStatus
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from app.core.errors import PROBLEM_JSON, Problem

OPENAPI_PATH = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"

_WHEN = {
    400: "The request cannot be used as sent.",
    401: "Not signed in, or the token is expired, forged or revoked.",
    403: "Signed in, but this role or device may not do this.",
    404: "Nothing with that id is visible to you.",
    409: "The request conflicts with the current state.",
    410: "Gone: start again from the beginning.",
    413: "The request is larger than the server accepts.",
    415: "The request's encoding is not supported.",
    422: "A field is missing or invalid; `errors` names each one.",
    429: "Too many failed attempts: wait `Retry-After` seconds before trying again.",
    503: "The database is unavailable; nothing was stored. Retry after `Retry-After` seconds.",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` entry documenting each error status as a problem document."""
    return {
        status: {
            "description": f"{HTTPStatus(status).phrase}. {_WHEN.get(status, '')}".strip(),
            "model": Problem,
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }


def add_component_schemas(schema: dict[str, Any], models: Sequence[type[BaseModel]]) -> None:
    """Add models (and the models they use) to `components.schemas`."""
    _, definitions = models_json_schema(
        [(m, "validation") for m in models], ref_template="#/components/schemas/{model}"
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, definition in definitions.get("$defs", {}).items():
        components.setdefault(name, definition)


def render_openapi(app: FastAPI) -> str:
    return json.dumps(app.openapi(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def write_openapi(app: FastAPI, path: Path = OPENAPI_PATH) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_openapi(app), encoding="utf-8")
    return path
