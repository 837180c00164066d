"""Structured logs: one JSON object per line, tagged with the id of the request it is about.

`fieldsync serve` hands uvicorn `log_config()`, so every logger of the process (uvicorn's,
the app's, libraries') writes through `JsonFormatter`: `time`, `level`, `logger`,
`message`, `request_id`, `pid`, plus the fields a call passes with `extra=` (the access
log's `method`, `route`, `status`, `duration_ms`).

What never reaches a log line: request bodies, query strings, headers (so no
`Authorization`) and exception messages, which can quote the values of a failed statement
(names, phone numbers). An exception is logged as its type and its stack (file, line and
function of each frame). Bearer tokens and JWTs that a message might still quote are
masked as a last line of defence. asyncio's own messages ("Task exception was never
retrieved", "Exception in callback ...") append the repr of the exception and of the task
on lines of their own: only their first line is kept, without the exception's text.
"""

from __future__ import annotations

import logging
import re
import secrets
import traceback
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import orjson

#: The id of the request being served: set by the telemetry middleware for the request's
#: task (uvicorn serves each request in a task of its own).
REQUEST_ID: ContextVar[str | None] = ContextVar("fieldsync_request_id", default=None)

REQUEST_ID_HEADER = "X-Request-ID"
#: An incoming X-Request-ID is kept only if it looks like an id: 1 to 128 characters that
#: cannot break a log line or smuggle text (UUIDs, hex, ULIDs, trace ids).
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

#: Masked wherever they appear in a message.
_SECRETS = re.compile(
    r"(?i)\bbearer\s+[^\s\"',;]+"  # an Authorization header's value
    r"|\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"  # a JWT
)
REDACTED = "[redacted]"

#: Attributes every LogRecord has; anything else on a record came with `extra=`.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's coloured copy of the message
}
#: At most this many frames of a stack, the innermost ones.
STACK_FRAMES = 30


def request_id_from(header: str | None) -> str:
    """The client's X-Request-ID if it is sane, else a new random id."""
    if header is not None and _SANE_REQUEST_ID.fullmatch(header):
        return header
    return secrets.token_hex(16)


#: The route label of a request no route matched (a 404): one value, whatever the path.
UNMATCHED = "unmatched"


def route_template(scope: Mapping[str, Any]) -> str:
    """The template of the route that served the request, once routing has run.

    FastAPI includes a router's routes without copying them: the route left in the scope
    has its own path (`/push`), and the path with its router's prefix
    (`/api/v1/sync/push`) is in the route context FastAPI keeps beside it (the tests
    check the label of a prefixed route, so a FastAPI that moves it is noticed). A mount
    (the docs' static files) leaves its path in `root_path`: it is labelled
    `<mount>/{path}`. Anything else is unmatched.
    """
    fastapi_scope = scope.get("fastapi")
    context = (
        fastapi_scope.get("effective_route_context") if isinstance(fastapi_scope, dict) else None
    )
    for source in (context, scope.get("route")):
        template = getattr(source, "path_format", None)
        if isinstance(template, str) and template:
            return template
    if "app_root_path" in scope:  # set by a Mount, with the root path before it
        mounted = str(scope.get("root_path", ""))[len(str(scope["app_root_path"])) :]
        if mounted:
            return f"{mounted}/{{path}}"
    return UNMATCHED


def redact(text: str) -> str:
    return _SECRETS.sub(REDACTED, text)


def _qualified_name(kind: type[BaseException]) -> str:
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def _stack(tb: TracebackType | None) -> list[str]:
    frames = traceback.extract_tb(tb)[-STACK_FRAMES:]
    return [f"{frame.filename}:{frame.lineno} in {frame.name}" for frame in frames]


def describe_exception(exc: BaseException) -> dict[str, Any]:
    """An exception for a log line: its type, stack and causes' types, never its message
    (a database error's message quotes the statement's values)."""
    described: dict[str, Any] = {
        "type": _qualified_name(type(exc)),
        "stack": _stack(exc.__traceback__),
    }
    causes: list[str] = []
    seen = {id(exc)}
    cause = exc.__cause__ or exc.__context__
    while cause is not None and id(cause) not in seen and len(causes) < 10:
        seen.add(id(cause))
        causes.append(_qualified_name(type(cause)))
        cause = cause.__cause__ or cause.__context__
    if causes:
        described["causes"] = causes
    return described


def _time(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def _asyncio_message(message: str, exc: BaseException | None) -> str:
    """The first line of a message of the `asyncio` logger, with the exception's text
    (which the lines after it repeat, and which can quote a statement's values) cut out."""
    line = message.split("\n", 1)[0]
    if exc is not None:
        for text in (repr(exc), str(exc)):
            if text:
                line = line.replace(text, f"<{_qualified_name(type(exc))}>")
    return line


class JsonFormatter(logging.Formatter):
    """A log record as one line of JSON (see the module's docstring for what it holds)."""

    def format(self, record: logging.LogRecord) -> str:
        exc = record.exc_info[1] if record.exc_info else None
        message = record.getMessage()
        if record.name == "asyncio" or record.name.startswith("asyncio."):
            message = _asyncio_message(message, exc)
        entry: dict[str, Any] = {
            "time": _time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(message),
            "request_id": getattr(record, "request_id", None) or REQUEST_ID.get(),
            "pid": record.process,
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and key not in entry:
                entry[key] = redact(value) if isinstance(value, str) else value
        if exc is not None:
            entry["exception"] = describe_exception(exc)
        return orjson.dumps(entry, default=str).decode()


def log_config(level: str = "INFO") -> dict[str, Any]:
    """The `logging.config.dictConfig` document `fieldsync serve` gives uvicorn: every
    logger writes JSON lines to stdout; uvicorn's own access log is off (the telemetry
    middleware writes one with the request id and the route)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stdout",
            }
        },
        "loggers": {
            "uvicorn": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.error": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            # At INFO SQLAlchemy logs every statement with its values: never.
            "sqlalchemy": {"level": "WARNING"},
            # /readyz reads the migration revision: two lines of Alembic chatter a probe.
            "alembic": {"level": "WARNING"},
        },
        "root": {"handlers": ["stdout"], "level": level},
    }
