"""The committed openapi/openapi.json is what the app generates (`make openapi` rewrites it)."""

from __future__ import annotations

import json

from openapi_spec_validator import OpenAPIV31SpecValidator

from app.core.openapi import OPENAPI_PATH, render_openapi
from app.main import create_app
from tests.conftest import make_settings


def test_committed_openapi_matches_the_app() -> None:
    app = create_app(make_settings("sqlite+aiosqlite:///:memory:"))
    generated = render_openapi(app)
    committed = OPENAPI_PATH.read_text(encoding="utf-8")
    assert committed == generated, "openapi/openapi.json is stale: run `make openapi` and commit it"


def test_every_operation_is_documented() -> None:
    schema = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))
    operation_ids = []
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            where = f"{method.upper()} {path}"
            assert operation.get("summary"), f"{where} has no summary"
            assert operation.get("description"), f"{where} has no description"
            assert ":" in operation["operationId"], f"{where} has no tag:name operation id"
            operation_ids.append(operation["operationId"])
            errors = {s: r for s, r in operation["responses"].items() if s[0] in "45"}
            if path == "/readyz":
                continue  # its 503 carries the readiness report itself
            for status, response in errors.items():
                assert list(response["content"]) == ["application/problem+json"], (
                    f"{where} {status}"
                )
    assert len(operation_ids) == len(set(operation_ids))


def test_swagger_authorize_uses_the_token_endpoint() -> None:
    schema = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))
    schemes = schema["components"]["securitySchemes"]
    flows = [s["flows"]["password"]["tokenUrl"] for s in schemes.values() if s["type"] == "oauth2"]
    assert flows == ["/api/v1/auth/token"]


def test_openapi_document_is_valid() -> None:
    """What /openapi.json serves (and /docs renders) is valid OpenAPI 3.1."""
    schema = create_app(make_settings("sqlite+aiosqlite:///:memory:")).openapi()
    assert schema["openapi"].startswith("3.1.")
    errors = [
        f"{error.json_path}: {error.message}"
        for error in OpenAPIV31SpecValidator(schema).iter_errors()
    ]
    assert errors == []
