"""A size limit on every request body, as sent (before any decompression).

A pure ASGI middleware. A body whose declared `Content-Length` is over the limit is
refused with 413 before any of it is read, before routing, signing in or anything
else. A body sent without a length (chunked) is counted as it is read and cut off at
the limit: the read raises `BodyTooLarge`, a 413 rendered as a problem document
like any HTTP error, and should anything swallow it, the response is still the 413.

Each path may have its own limit (`path_limits`): a push may send up to
FIELDSYNC_BATCH_MAX_BYTES, and keeps its own check of the body after decompression
(app/core/body.py). A push refused here counts as a refused batch
(`fieldsync_push_batches_total{outcome="refused"}`): the push's own code never sees it.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import problem_response
from app.core.metrics import count_push_refused


def _detail(limit: int) -> str:
    return f"The body is larger than the limit of {limit} bytes."


class BodyTooLarge(HTTPException):
    """The body read so far is over the limit. An HTTPException, so that FastAPI's
    body parsing lets it through (it turns other errors into a 400) and the app's HTTP
    error handler renders it."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=_detail(limit))


def route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


class BodySizeLimitMiddleware:
    """Refuses request bodies over `max_bytes` (or the path's own limit) with 413."""

    def __init__(
        self, app: ASGIApp, *, max_bytes: int, path_limits: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.path_limits = dict(path_limits or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.path_limits.get(route_path(scope), self.max_bytes)
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            count_push_refused(route_path(scope), "refused")
            await problem_response(413, _detail(limit), instance=route_path(scope))(
                scope, receive, send
            )
            return

        received = 0
        exceeded = False
        response_started = False
        replaced = False

        async def receive_within_limit() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    if not exceeded:  # a pushed batch refused whole: counted once
                        count_push_refused(route_path(scope), "refused")
                    exceeded = True
                    raise BodyTooLarge(limit)
            return message

        async def send_or_refuse(message: Message) -> None:
            nonlocal response_started, replaced
            if replaced:
                return
            if message["type"] == "http.response.start":
                response_started = True
                if exceeded and message["status"] != 413:
                    # The app answered something else to a body it could not read whole.
                    replaced = True
                    await problem_response(413, _detail(limit), instance=route_path(scope))(
                        scope, receive, send
                    )
                    return
            await send(message)

        try:
            await self.app(scope, receive_within_limit, send_or_refuse)
        except BodyTooLarge:
            if response_started:
                raise
            await problem_response(413, _detail(limit), instance=route_path(scope))(
                scope, receive, send
            )
