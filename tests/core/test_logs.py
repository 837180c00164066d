"""Structured logs in process: one JSON object a line, a request id on each request's
lines and in its response, and no password, token or household data in any line.

The same is checked on a real server's log file in
tests/ops/test_observability_processes.py.
"""

from __future__ import annotations

import asyncio
import gc
import io
import json
import logging
import re
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.logs import REDACTED, JsonFormatter, log_config
from tests.ops.traces import SECRETS, leave_traces

GENERATED_ID = re.compile(r"[0-9a-f]{32}")


class CapturedLog:
    """Every record the process logs, formatted as `fieldsync serve` formats them."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        entries = [json.loads(line) for line in self.text.splitlines()]
        assert all(isinstance(entry, dict) for entry in entries)
        return entries

    def access(self) -> list[dict[str, Any]]:
        return [e for e in self.lines() if e["logger"] == "fieldsync.access"]


def _server_side(record: logging.LogRecord) -> bool:
    """The tests' own HTTP client (httpx) logs each URL it calls: not the server's log."""
    return not record.name.startswith(("httpx", "httpcore"))


@pytest.fixture
def captured_log() -> Iterator[CapturedLog]:
    captured = CapturedLog()
    handler = logging.StreamHandler(captured.stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(_server_side)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield captured
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _record(message: str, *args: Any, **extra: Any) -> logging.LogRecord:
    record = logging.LogRecord("fieldsync.test", logging.WARNING, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    return record


def test_a_line_is_one_json_object_with_the_fields_an_operator_filters_on() -> None:
    line = JsonFormatter().format(_record("stored %d visits", 3, route="/api/v1/sync/push"))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "stored 3 visits"
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "fieldsync.test"
    assert entry["route"] == "/api/v1/sync/push"
    assert entry["request_id"] is None  # outside a request
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"])


def test_an_exception_is_logged_as_its_type_and_stack_never_its_message() -> None:
    try:
        try:
            raise KeyError(SECRETS["phone"])
        except KeyError as inner:
            raise ValueError(f"no household named {SECRETS['head_name']}") from inner
    except ValueError:
        record = _record("failed")
        record.exc_info = sys.exc_info()
    line = JsonFormatter().format(record)
    entry = json.loads(line)
    assert entry["exception"]["type"] == "ValueError"
    assert entry["exception"]["causes"] == ["KeyError"]
    assert any("test_logs.py" in frame for frame in entry["exception"]["stack"])
    assert SECRETS["head_name"] not in line
    assert SECRETS["phone"] not in line


def test_bearer_tokens_and_jwts_in_a_message_are_masked() -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    line = JsonFormatter().format(
        _record("got %s and Authorization: Bearer %s", jwt, "opaque-refresh-secret")
    )
    assert jwt not in line
    assert "opaque-refresh-secret" not in line
    assert json.loads(line)["message"] == f"got {REDACTED} and Authorization: {REDACTED}"


def test_the_serve_log_config_writes_json_and_silences_uvicorns_access_log() -> None:
    config = log_config("INFO")
    assert config["formatters"]["json"]["()"] == "app.core.logs.JsonFormatter"
    assert config["root"]["handlers"] == ["stdout"]
    assert config["loggers"]["uvicorn.access"]["propagate"] is False
    assert config["loggers"]["sqlalchemy"]["level"] == "WARNING"


async def test_a_sane_request_id_is_kept_and_any_other_replaced(
    client: httpx.AsyncClient, captured_log: CapturedLog
) -> None:
    kept = "4f1c2a9e-2b1d-4c55-9a0e-2f7d8c1b3a6e"
    assert (await client.get("/healthz", headers={"X-Request-ID": kept})).headers[
        "x-request-id"
    ] == kept
    for bad in ("x" * 129, "two words", 'quote"d', "new\tline", "тест", ""):
        response = await client.get("/healthz", headers={b"X-Request-ID": bad.encode()})
        assert GENERATED_ID.fullmatch(response.headers["x-request-id"]), bad
    generated = {
        (await client.get("/api/v1/no-such-route")).headers["x-request-id"] for _ in range(3)
    }
    assert len(generated) == 3
    assert all(GENERATED_ID.fullmatch(value) for value in generated)

    access = captured_log.access()
    assert access[0]["request_id"] == kept
    assert {e["request_id"] for e in access[-3:]} == generated
    last = access[-1]
    assert last["method"] == "GET"
    assert last["route"] == "unmatched"
    assert last["status"] == 404
    assert isinstance(last["duration_ms"], float)
    assert last["message"] == "GET unmatched 404"
    assert "no-such-route" not in captured_log.text


async def test_no_password_token_or_household_data_reaches_the_log(
    client: httpx.AsyncClient, session: AsyncSession, captured_log: CapturedLog
) -> None:
    traces = await leave_traces(client, session)
    text = captured_log.text
    for secret in traces.secrets:
        assert secret not in text, f"the log holds {secret[:12]}..."
    access = captured_log.access()
    # Every request was logged, under the id its response carried, by route template.
    logged = {e["request_id"]: e for e in access}
    assert set(traces.request_ids) <= set(logged)
    assert {e["route"] for e in access} >= {
        "/api/v1/auth/token",
        "/api/v1/auth/refresh",
        "/api/v1/sync/push",
        "/api/v1/sync/pull",
        "/api/v1/households",
        "/api/v1/exports/households",
    }
    assert any(e["status"] == 401 for e in access)  # the failed sign-in


async def test_a_500_logs_the_exception_type_and_request_id_not_its_message(
    app: FastAPI, captured_log: CapturedLog
) -> None:
    async def explode() -> None:
        raise ValueError(f"cannot merge {SECRETS['head_name']} at {SECRETS['address']}")

    app.add_api_route("/test-explode/{household_id}", explode, methods=["POST"])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://fieldsync.test") as c:
        response = await c.post(
            "/test-explode/42?phone=" + SECRETS["phone"],
            json={"head_name": SECRETS["head_name"]},
            headers={"X-Request-ID": "trace-500"},
        )
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "trace-500"
    text = captured_log.text
    for secret in (SECRETS["head_name"], SECRETS["address"], SECRETS["phone"]):
        assert secret not in text
    errors = [e for e in captured_log.lines() if e["logger"] == "fieldsync.errors"]
    assert len(errors) == 1
    assert errors[0]["request_id"] == "trace-500"
    assert errors[0]["exception"]["type"] == "ValueError"
    assert errors[0]["message"] == "unhandled ValueError on POST /test-explode/{household_id}"
    access = captured_log.access()[-1]
    assert (access["status"], access["request_id"]) == (500, "trace-500")


def test_asyncio_messages_keep_their_first_line_without_the_exceptions_text() -> None:
    """asyncio logs a task's unretrieved exception with its repr in the message itself
    (`future: <Task ... exception=ValueError('...')>`): only the first line is kept."""
    detail = f"DETAIL: Key (phone)=({SECRETS['phone']}) already exists."
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign, assignment]
    asyncio_logger = logging.getLogger("asyncio")
    asyncio_logger.addHandler(handler)

    async def fail() -> None:
        raise ValueError(detail)

    loop = asyncio.new_event_loop()
    try:
        task = loop.create_task(fail())
        loop.run_until_complete(asyncio.sleep(0.01))
        assert task.done()
        del task  # never retrieved: asyncio logs it when the task is collected
        gc.collect()
    finally:
        loop.close()
        asyncio_logger.removeHandler(handler)

    assert records, "asyncio logged nothing for the unretrieved task exception"
    assert detail in records[0].getMessage()  # what asyncio itself puts in the message
    lines = [JsonFormatter().format(record) for record in records]
    entry = json.loads(lines[0])
    assert entry["message"] == "Task exception was never retrieved"
    assert entry["exception"]["type"] == "ValueError"
    assert not [line for line in lines if SECRETS["phone"] in line], lines

    # An exception quoted on the first line is cut out too.
    record = logging.LogRecord(
        "asyncio", logging.ERROR, __file__, 1, "Exception in callback %r\nmore", (detail,), None
    )
    error = ValueError(detail)
    record.exc_info = (ValueError, error, None)
    line = JsonFormatter().format(record)
    assert json.loads(line)["message"] == "Exception in callback '<ValueError>'"
    assert SECRETS["phone"] not in line
