"""gzip request bodies on every endpoint, as docs/PROTOCOL.md promises ("request bodies
may be gzip-compressed"): a phone that compresses its token refresh must not be locked
out of syncing.

A pure ASGI middleware, inside the body-size limit (which counts the bytes as sent). A
body sent with `Content-Encoding: gzip` is read whole, inflated to at most the limit
(a gzip bomb is a 413 after inflating no more than that) and handed on as a plain body,
with `Content-Encoding` gone and `Content-Length` its inflated size. Other encodings
are a 415, a body that is not gzip a 400; all problem+json. Paths in `own_paths` read
their body themselves (a push inflates within its own limit: app/core/body.py) and are
passed through untouched.
"""

from __future__ import annotations

import zlib
from collections.abc import Collection

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.body_limit import route_path
from app.core.errors import problem_response

IDENTITY = "identity"
GZIP = frozenset({"gzip", "x-gzip"})


class _Refused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def inflate(body: bytes, max_bytes: int) -> bytes:
    """A gzip body inflated, refusing (413) to inflate past `max_bytes`."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, max_bytes + 1)
        if len(out) <= max_bytes and not inflater.unconsumed_tail:
            out += inflater.flush()
    except zlib.error:
        raise _Refused(400, "The body is not valid gzip.") from None
    if len(out) > max_bytes or inflater.unconsumed_tail:
        raise _Refused(413, f"The body inflates past the limit of {max_bytes} bytes.")
    if not inflater.eof:
        raise _Refused(400, "The gzip body is truncated.")
    return out


class RequestDecompressionMiddleware:
    """Inflates gzip request bodies (see the module's docstring)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, own_paths: Collection[str] = ()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.own_paths = frozenset(own_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or route_path(scope) in self.own_paths:
            await self.app(scope, receive, send)
            return
        encoding = Headers(scope=scope).get("content-encoding", IDENTITY).strip().lower()
        if encoding == IDENTITY:
            await self.app(scope, receive, send)
            return
        try:
            if encoding not in GZIP:
                raise _Refused(
                    415, f"Content-Encoding {encoding!r} is not supported; send identity or gzip."
                )
            body = await _read_all(receive)
            if body is None:
                return  # the client hung up mid-body: no one to answer
            plain = inflate(body, self.max_bytes) if body else b""
        except _Refused as refused:
            response = problem_response(refused.status, refused.detail, instance=route_path(scope))
            await response(scope, receive, send)
            return

        headers = [
            (name, value)
            for name, value in scope["headers"]
            if name.lower() not in (b"content-encoding", b"content-length")
        ]
        headers.append((b"content-length", str(len(plain)).encode()))
        delivered = False

        async def receive_plain() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": plain, "more_body": False}
            return await receive()  # what comes after the body: a disconnect

        await self.app({**scope, "headers": headers}, receive_plain, send)


async def _read_all(receive: Receive) -> bytes | None:
    """The whole body as sent, or None if the client hung up first."""
    parts = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts)
