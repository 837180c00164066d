"""Every error is application/problem+json: 404, 405, validation, domain and 503."""

from __future__ import annotations

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from app.core.errors import PROBLEM_JSON


async def test_unknown_path_is_problem_json(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/no-such-thing")
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert body["status"] == 404
    assert body["title"] == "Not Found"
    assert body["instance"] == "/api/v1/no-such-thing"


async def test_wrong_method_is_problem_json(client: httpx.AsyncClient) -> None:
    response = await client.delete("/api/v1/auth/token")
    assert response.status_code == 405
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["title"] == "Method Not Allowed"


async def test_validation_error_names_the_field(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/auth/refresh", json={"refresh_token": ""})
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert [e["field"] for e in body["errors"]] == ["refresh_token"]
    assert body["errors"][0]["code"] == "string_too_short"
    assert "refresh_token" in body["detail"]


async def test_malformed_json_body_is_422_not_500(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/refresh",
        content=b'{"refresh_token": "\x00',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_JSON
    # Found by OpenAPI fuzzing: the field was the character position ("19").
    body = response.json()
    assert body["detail"] == "The request is not valid: body."
    [error] = body["errors"]
    assert error["field"] == "body"
    assert error["code"] == "json_invalid"
    assert error["message"].startswith("is not valid JSON: "), error
    assert error["message"].endswith(" at character 19"), error


async def test_lost_database_is_503_with_retry_after(app: FastAPI) -> None:
    @app.get("/_test/db-down")
    async def db_down() -> None:
        raise OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        response = await c.get("/_test/db-down")
    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM_JSON
    assert int(response.headers["retry-after"]) > 0


@pytest.mark.parametrize("path", ["/api/v1/auth/me", "/api/v1/devices"])
async def test_missing_token_is_401_problem_with_bearer_challenge(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.headers["www-authenticate"] == "Bearer"


async def test_unexpected_error_is_500_problem_without_internals(app: FastAPI) -> None:
    @app.get("/_test/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        response = await c.get("/_test/boom")
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM_JSON
    assert "secret internals" not in response.text


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.DeadlockDetectedError("deadlock detected"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
        ConnectionResetError("reset by peer"),
        PoolTimeout("QueuePool limit of size 10 overflow 10 reached, connection timed out"),
    ],
    ids=["deadlock", "connection-lost", "reset", "pool-exhausted"],
)
async def test_transient_database_errors_are_503(app: FastAPI, error: Exception) -> None:
    @app.get("/_test/transient")
    async def transient() -> None:
        raise error

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        response = await c.get("/_test/transient")
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) > 0


async def test_a_non_transient_driver_error_is_500(app: FastAPI) -> None:
    @app.get("/_test/data-error")
    async def data_error() -> None:
        raise asyncpg.exceptions.NumericValueOutOfRangeError("out of range")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        response = await c.get("/_test/data-error")
    assert response.status_code == 500
