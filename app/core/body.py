"""Reading a push's body within limits: bounded size, bounded gzip decompression.

The limits apply to the decompressed body, so a gzip bomb (a few kilobytes that
inflate to gigabytes) is refused with 413 after inflating at most the limit. The
encoding rules are those of every other body (app/core/body_encoding.py).
"""

from __future__ import annotations

from fastapi import Request

from app.core.body_encoding import inflate, is_gzip
from app.core.errors import PayloadTooLarge


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, decompressed if it is gzip, and never more than `max_bytes`
    (as sent, and once inflated)."""
    gzipped = is_gzip(request.headers)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"The body is larger than the limit of {max_bytes} bytes.")
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"The body is larger than the limit of {max_bytes} bytes.")
        parts.append(chunk)
    body = b"".join(parts)
    return inflate(body, max_bytes) if gzipped and body else body
