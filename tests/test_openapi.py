"""The committed openapi/openapi.json is what the app generates (`make openapi` rewrites it)."""

from __future__ import annotations

import json
import re
import uuid

import httpx
from openapi_spec_validator import OpenAPIV31SpecValidator

from app.core.openapi import OPENAPI_PATH, render_openapi
from app.main import create_app
from tests.conftest import make_settings
from tests.factories import assert_problem


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


async def test_a_body_unparseable_or_too_large_gets_a_status_its_operation_declares() -> None:
    """Found by OpenAPI fuzzing: a JSON body that is not UTF-8, or a form without its
    multipart boundary, is a 400 before anything else runs; and a body over
    FIELDSYNC_MAX_BODY_BYTES is a 413 on every endpoint. The operations that take a body
    declared neither. A body in an encoding other than gzip is a 415, and one that says
    gzip but is not, a 400 (app/core/body_encoding.py)."""
    settings = make_settings("sqlite+aiosqlite:///:memory:")
    app = create_app(settings)
    schema = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))
    transport = httpx.ASGITransport(app=app)
    too_large = b"x" * (settings.max_body_bytes + 1)
    checked = []
    async with httpx.AsyncClient(transport=transport, base_url="http://fieldsync.test") as client:
        for path, methods in schema["paths"].items():
            for method, operation in methods.items():
                if "requestBody" not in operation or operation["operationId"] == "sync:push":
                    continue  # push reads its own body, after the token: tests/sync
                media_type = next(iter(operation["requestBody"]["content"]))
                if media_type == "application/json":
                    headers, body = {"content-type": media_type}, b'{"note": "\xff"}'
                else:
                    headers, body = {"content-type": "multipart/form-data"}, b"username=a"
                url = re.sub(r"\{[a-z_]+\}", str(uuid.uuid4()), path)
                response = await client.request(method, url, content=body, headers=headers)
                assert_problem(response, 400)
                response = await client.request(
                    method, url, content=too_large, headers={"content-type": media_type}
                )
                assert_problem(response, 413)
                for encoding, status in (("br", 415), ("gzip", 400)):  # b"x..." is no gzip
                    response = await client.request(
                        method,
                        url,
                        content=b"x" * 100,
                        headers={"content-type": media_type, "content-encoding": encoding},
                    )
                    assert_problem(response, status)
                declared = operation["responses"]
                assert {"400", "413", "415"} <= set(declared), (operation["operationId"], declared)
                checked.append(operation["operationId"])
    await app.state.engine.dispose()
    assert {
        "auth:token",
        "auth:refresh",
        "devices:revoke",
        "households:merge",
        "review:review_visit",
        "conflicts:resolve",
    } <= set(checked), checked
