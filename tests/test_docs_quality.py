"""Supervisors read /docs: every operation is named, explained, shows its errors, and
shows realistic examples of what it takes and returns."""

from __future__ import annotations

from typing import Any

import pytest

from app.core.config import Settings
from app.main import create_app


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    settings = Settings(
        database_url="sqlite+aiosqlite:///unused.db", env="test", secret_key="k" * 40
    )
    return create_app(settings).openapi()


def _operations(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{method.upper()} {path}", operation)
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
    ]


def _shows_examples(
    schema: dict[str, Any], node: dict[str, Any], seen: frozenset[str] = frozenset()
) -> bool:
    """The node has examples itself, or Swagger UI can build a realistic example from its
    parts: every property (or the array's items) has one, or is an enum or a constant."""
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        if name in seen:
            return True
        return _shows_examples(schema, schema["components"]["schemas"][name], seen | {name})
    if "examples" in node or "example" in node or "enum" in node or "const" in node:
        return True
    for combined in ("anyOf", "oneOf", "allOf"):
        if combined in node:
            parts = [p for p in node[combined] if p.get("type") != "null"]
            return all(_shows_examples(schema, p, seen) for p in parts)
    if node.get("type") == "array":
        return _shows_examples(schema, node.get("items", {}), seen)
    if node.get("type") == "boolean":
        return True
    properties = node.get("properties")
    if properties:
        return all(_shows_examples(schema, p, seen) for p in properties.values())
    return False


def test_every_operation_has_a_name_a_summary_and_a_description(schema: dict[str, Any]) -> None:
    missing = [
        name
        for name, op in _operations(schema)
        if not op.get("summary")
        or not op.get("description")
        or ":" not in op.get("operationId", "")
    ]
    assert missing == []


#: Operations that cannot fail but by the server being down, or answer their own way.
CANNOT_FAIL = {"GET /healthz", "GET /api/v1/codes"}
OWN_ERROR_SHAPE = {"GET /readyz"}  # 503 carries the readiness report itself


def test_every_operation_documents_its_errors_as_problem_documents(schema: dict[str, Any]) -> None:
    undocumented = []
    for name, op in _operations(schema):
        if name in CANNOT_FAIL | OWN_ERROR_SHAPE:
            continue
        errors = {k: v for k, v in op["responses"].items() if k.startswith(("4", "5"))}
        if not errors or any(
            "application/problem+json" not in v.get("content", {}) for v in errors.values()
        ):
            undocumented.append(name)
    assert undocumented == []


def test_every_body_and_answer_shows_examples(schema: dict[str, Any]) -> None:
    bare = []
    for name, op in _operations(schema):
        for content_type, content in op.get("requestBody", {}).get("content", {}).items():
            if not ("examples" in content or _shows_examples(schema, content["schema"])):
                bare.append(f"{name} request {content_type}")
        for status, response in op["responses"].items():
            if not status.startswith("2"):
                continue
            content = response.get("content", {}).get("application/json")
            if content and not _shows_examples(schema, content["schema"]):
                bare.append(f"{name} {status}")
    assert bare == []


def test_the_checks_above_can_fail(schema: dict[str, Any]) -> None:
    assert not _shows_examples(schema, {"type": "object", "properties": {"x": {"type": "string"}}})
    assert _shows_examples(
        schema, {"type": "object", "properties": {"x": {"type": "string", "examples": ["a"]}}}
    )
