"""Reading a request body within limits: bounded size, bounded gzip decompression.

The limits apply to the decompressed body, so a gzip bomb (a few kilobytes that
inflate to gigabytes) is refused with 413 after inflating at most the limit.
"""

from __future__ import annotations

import zlib

from fastapi import Request

from app.core.body_encoding import AFTER_THE_STREAM
from app.core.errors import MalformedBody, PayloadTooLarge, UnsupportedEncoding


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, decompressed if it is gzip, and never more than `max_bytes`."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in {"identity", "gzip", "x-gzip"}:
        raise UnsupportedEncoding(
            f"Content-Encoding {encoding!r} is not supported; send identity or gzip."
        )
    declared = request.headers.get("content-length")
    if encoding == "identity" and declared and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"The body is larger than the limit of {max_bytes} bytes.")
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS) if encoding != "identity" else None
    parts: list[bytes] = []
    size = 0
    raw = 0
    async for chunk in request.stream():
        raw += len(chunk)
        if inflater is None:
            size += len(chunk)
            if size > max_bytes:
                raise PayloadTooLarge(f"The body is larger than the limit of {max_bytes} bytes.")
            parts.append(chunk)
            continue
        if raw > max_bytes:
            raise PayloadTooLarge(f"The body is larger than the limit of {max_bytes} bytes.")
        data = chunk
        while data:
            try:
                out = inflater.decompress(data, max_bytes + 1 - size)
            except zlib.error:
                raise MalformedBody("The body is not valid gzip.") from None
            size += len(out)
            if size > max_bytes:
                raise PayloadTooLarge(
                    f"The body inflates past the limit of {max_bytes} bytes after decompression."
                )
            parts.append(out)
            data = inflater.unconsumed_tail
    if inflater is not None:
        try:
            tail = inflater.flush()
        except zlib.error:
            raise MalformedBody("The body is not valid gzip.") from None
        size += len(tail)
        if size > max_bytes:
            raise PayloadTooLarge(f"The body inflates past the limit of {max_bytes} bytes.")
        parts.append(tail)
        if not inflater.eof:
            raise MalformedBody("The gzip body is truncated.")
        if inflater.unused_data:  # a second member, or junk: refused, not dropped unread
            raise MalformedBody(AFTER_THE_STREAM)
    return b"".join(parts)
