"""Request telemetry: a request id, one access log line and one latency observation per
request, in a pure ASGI middleware (a `BaseHTTPMiddleware` would buffer streamed exports).

The request id is the client's `X-Request-ID` when it looks like an id, else a new one; it
is echoed in the response's `X-Request-ID` and tagged on every log line written while the
request is served (app/core/logs.py). Requests are labelled by their route template
(`/api/v1/review/households/{household_id}`), never the raw path: ids in paths would make
the metrics' label values unbounded, and paths and query strings may carry what a log
must not hold.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core import metrics
from app.core.errors import CLIENT_GONE
from app.core.logs import REQUEST_ID, REQUEST_ID_HEADER, request_id_from, route_template

access_logger = logging.getLogger("fieldsync.access")


#: Methods labelled as they are; any other (h11 accepts any token) is `OTHER`, so that a
#: client cannot mint label values.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


#: The status logged (and counted as 4xx) for a request that ended with no answer
#: because the client hung up first, as a phone losing signal does (the layer that
#: saw it noted it: `errors.log_client_gone`). Not a server error; nginx's code for it.
#: With no answer and no hang-up, uvicorn answers 500, and that is what is logged.
CLIENT_GONE_STATUS = 499


def _status_class(status: int) -> str:
    return f"{status // 100}xx"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


class TelemetryMiddleware:
    """Request id, access log and latency histogram (see the module's docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(_header(scope, b"x-request-id"))
        # Not reset afterwards: uvicorn logs an unhandled exception after this returns, in
        # the request's own task (one per request), and that line should carry the id too.
        REQUEST_ID.set(request_id)
        started = time.perf_counter()
        status = 500  # until a response starts: an exception, or no answer, is a 500
        responded = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.start":
                responded = True
                status = int(message["status"])
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
            if not responded and scope.get(CLIENT_GONE):
                status = CLIENT_GONE_STATUS
        finally:
            seconds = time.perf_counter() - started
            method = scope["method"] if scope["method"] in METHODS else "OTHER"
            route = route_template(scope)
            metrics.REQUEST_SECONDS.labels(
                method=method, route=route, status=_status_class(status)
            ).observe(seconds)
            fields: dict[str, Any] = {
                "method": method,
                "route": route,
                "status": status,
                "duration_ms": round(seconds * 1000, 1),
            }
            access_logger.info("%s %s %d", method, route, status, extra=fields)


def install_telemetry(app: FastAPI) -> None:
    """Wrap the app's whole middleware stack, ServerErrorMiddleware included: a 500 is
    timed, logged with its status and carries the request id like any other response
    (`add_middleware` would put this inside that one). Install it last, so that it wraps
    every other layer too."""
    build: Callable[[], ASGIApp] = app.build_middleware_stack

    def build_with_telemetry() -> ASGIApp:
        return TelemetryMiddleware(build())

    app.build_middleware_stack = build_with_telemetry  # type: ignore[method-assign]
