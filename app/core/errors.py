"""Domain errors and their one rendering: RFC 9457 `application/problem+json`.

Services raise `DomainError` subclasses, never `HTTPException`; the handlers
installed by `install_error_handlers` turn every error, including FastAPI's own
404, 405 and validation errors, into a problem document.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from app.core.logs import REQUEST_ID, describe_exception, route_template

PROBLEM_JSON = "application/problem+json"
DATABASE_RETRY_AFTER_SECONDS = 5

logger = logging.getLogger("fieldsync.errors")


class FieldError(BaseModel):
    """One problem with one field of the request."""

    field: str = Field(examples=["visits.3.reasons.0"])
    code: str = Field(examples=["unknown_code"])
    message: str = Field(examples=["'cats' is not a reason code; see GET /api/v1/codes"])


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    type: str = "about:blank"
    title: str = Field(examples=["Not Found"])
    status: int = Field(examples=[404])
    detail: str | None = Field(default=None, examples=["No household with that id."])
    instance: str | None = None
    errors: list[FieldError] | None = None


class DomainError(Exception):
    """An error a service raises; it carries its HTTP status and a plain-words detail."""

    status_code: int = 400
    headers: dict[str, str] | None = None
    #: Commit the request's transaction despite the error: for an error that must leave
    #: a durable trace, such as revoking a token family when a rotated token is reused.
    keep_changes: bool = False

    def __init__(self, detail: str, *, errors: Sequence[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = list(errors) if errors else None


class NotAuthenticated(DomainError):
    status_code = 401
    headers = {"WWW-Authenticate": "Bearer"}  # noqa: RUF012


class Forbidden(DomainError):
    status_code = 403


class NotFound(DomainError):
    status_code = 404


class Conflict(DomainError):
    status_code = 409


class Invalid(DomainError):
    status_code = 422


class MalformedBody(DomainError):
    status_code = 400


class BadRequest(DomainError):
    status_code = 400


class Gone(DomainError):
    status_code = 410


class RetryLater(DomainError):
    """Nothing was stored; the same request sent again shortly will go through."""

    status_code = 503
    headers = {"Retry-After": "1"}  # noqa: RUF012  (read only)


class PayloadTooLarge(DomainError):
    status_code = 413


class UnsupportedEncoding(DomainError):
    status_code = 415


def problem_response(
    status: int,
    detail: str | None = None,
    *,
    errors: Sequence[FieldError] | None = None,
    headers: dict[str, str] | None = None,
    instance: str | None = None,
) -> JSONResponse:
    problem = Problem(
        title=HTTPStatus(status).phrase,
        status=status,
        detail=detail,
        instance=instance,
        errors=list(errors) if errors else None,
    )
    return JSONResponse(
        problem.model_dump(exclude_none=True),
        status_code=status,
        headers=headers,
        media_type=PROBLEM_JSON,
    )


def _field_path(loc: Sequence[Any]) -> str:
    # Drop FastAPI's "body"/"query"/... prefix only when more follows it.
    parts = [str(p) for p in loc]
    if len(parts) > 1 and parts[0] in {"body", "query", "path", "header", "cookie"}:
        parts = parts[1:]
    return ".".join(parts)


def _field_error(error: dict[str, Any]) -> FieldError:
    loc = error.get("loc", ())
    if error["type"] == "json_invalid" and len(loc) == 2 and loc[0] == "body":
        # FastAPI's location of a body that is not JSON is the character it failed at.
        reason = str((error.get("ctx") or {}).get("error", "JSON decode error"))
        return FieldError(
            field="body",
            code="json_invalid",
            message=f"is not valid JSON: {reason.removesuffix(' at')} at character {loc[1]}",
        )
    return FieldError(field=_field_path(loc), code=error["type"], message=error["msg"])


def validation_field_errors(raw: Sequence[Any]) -> list[FieldError]:
    """Pydantic's error list, as `{field, code, message}` entries."""
    return [_field_error(e) for e in jsonable_encoder(raw)]


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    return problem_response(
        exc.status_code,
        exc.detail,
        errors=exc.errors,
        headers=exc.headers,
        instance=request.url.path,
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else None
    headers = dict(exc.headers) if exc.headers else None
    return problem_response(exc.status_code, detail, headers=headers, instance=request.url.path)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = validation_field_errors(exc.errors())
    fields = ", ".join(sorted({e.field for e in errors}))
    return problem_response(
        422, f"The request is not valid: {fields}.", errors=errors, instance=request.url.path
    )


#: PostgreSQL errors that say "try again": deadlock, serialization failure, lock timeout,
#: cancelled statement, shutdown, not accepting connections, too many connections.
TRANSIENT_SQLSTATES = frozenset(
    {"40P01", "40001", "55P03", "57014", "57P01", "57P02", "57P03", "53300"}
)


def _is_transient(exc: Exception) -> bool:
    if isinstance(exc, PoolTimeout):  # every connection of the pool busy for pool_timeout
        return True
    if isinstance(exc, DBAPIError):
        if isinstance(exc, OperationalError | InterfaceError) or exc.connection_invalidated:
            return True
        exc = exc.orig if isinstance(exc.orig, Exception) else exc
    if isinstance(
        exc,
        ConnectionError
        | socket.gaierror
        | asyncpg.InterfaceError
        | asyncpg.PostgresConnectionError,
    ):
        return True
    sqlstate = str(getattr(exc, "sqlstate", None) or "")
    return sqlstate in TRANSIENT_SQLSTATES or sqlstate.startswith("08")  # 08: connection lost


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """A lost or refused database connection, or a transient database error: 503,
    nothing committed, retry later.

    SQLAlchemy wraps most driver errors in DBAPIError; a refused connection may also
    surface as the driver's bare ConnectionError, and the raw asyncpg path (bulk inserts)
    raises asyncpg's own errors. A request that waited in vain for a pooled connection
    (the server overloaded) is answered the same way.
    """
    if not _is_transient(exc):
        return await _unexpected_error(request, exc)
    cause = type(exc.orig if isinstance(exc, DBAPIError) else exc).__name__
    logger.warning("database unavailable: %s", cause)
    # Imported here, not with this module: the command line imports this module, and
    # prometheus-client must not be imported before `serve` chooses its metrics
    # directory (app/core/metrics.py, "Worker processes").
    from app.core import metrics

    metrics.count_push_refused(route_template(request.scope), "retry")
    return problem_response(
        503,
        "The database is unavailable; nothing was stored. Retry later.",
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
        instance=request.url.path,
    )


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    """Logged as the exception's type and stack, with the request id and the route
    template; never its message, which can quote a statement's values, nor the body
    (app/core/logs.py). The telemetry middleware puts the request id on the 500."""
    logger.error(
        "unhandled %s on %s %s",
        type(exc).__name__,
        request.method,
        route_template(request.scope),
        extra={"request_id": REQUEST_ID.get(), "exception": describe_exception(exc)},
    )
    return problem_response(500, "An internal error occurred.", instance=request.url.path)


class ClientGoneMiddleware:
    """A client that hangs up before its answer is whole (a phone losing signal
    mid-download) is normal on field links, not a server error: starlette's
    `ClientDisconnect` ends the request here, logged at INFO, with nothing more sent to
    a client that is gone, instead of reaching the 500 handler (`_unexpected_error`) and
    uvicorn's "Exception in ASGI application". Installed inside ServerErrorMiddleware,
    which would run the 500 handler for it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except ClientDisconnect:
            if scope["type"] != "http":
                raise
            log_client_gone(scope)


#: Set in an HTTP scope whose client hung up before its answer was whole.
CLIENT_GONE = "fieldsync.client_gone"


def log_client_gone(scope: Scope) -> None:
    """Note in `scope` and in the log (INFO) that the client went away: for the access
    log (app/core/telemetry.py), not an error."""
    scope[CLIENT_GONE] = True
    logger.info("client went away during %s %s", scope["method"], route_template(scope))


def install_error_handlers(app: FastAPI) -> None:
    app.add_middleware(ClientGoneMiddleware)
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for error in (
        DBAPIError,
        PoolTimeout,
        ConnectionError,
        socket.gaierror,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
    ):
        app.add_exception_handler(error, _database_unavailable)
    app.add_exception_handler(Exception, _unexpected_error)
