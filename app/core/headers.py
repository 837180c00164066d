"""Security headers on every response, errors, 404s, the docs and streamed exports included.

A pure ASGI middleware: it adds headers to the response's start message and passes every
body chunk through untouched, so a streamed export still streams (Starlette's
BaseHTTPMiddleware would buffer it). `install_security_headers` puts it outside even
Starlette's ServerErrorMiddleware, which sends the 500 of an unhandled error itself,
past every middleware added with `add_middleware`.

What every response gets, unless it set its own:

* `X-Content-Type-Options: nosniff`: a browser takes the declared media type as meant.
* `X-Frame-Options: DENY` and CSP `frame-ancestors 'none'`: no page may frame this one.
* `Referrer-Policy: no-referrer`: URLs (with their filters) are not passed on.
* `Content-Security-Policy`: `API_CSP`, which lets a response load nothing at all. The
  docs pages set their own (`docs_page_csp`): their scripts come from this server, and
  their inline start-up script is allowed by its hash.
* `Cache-Control: no-store`: nothing the API answers is kept by a browser or a proxy
  (the docs' static assets, under `cacheable_prefixes`, keep their validators instead).
* `Strict-Transport-Security`, only when FIELDSYNC_HSTS_SECONDS is above 0.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable

from fastapi import FastAPI
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: For API responses (JSON, files, errors): load nothing, be framed by nothing.
API_CSP = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

#: Swagger UI and ReDoc: scripts, styles and images from this server only, calls to this
#: server only, inline scripts by hash. ReDoc also needs inline styles (styled-components
#: writes <style> elements) and a worker made from a blob (its search).
_DOCS_CSP = (
    "default-src 'none'; script-src 'self'{hashes}; style-src 'self'{inline_styles}; "
    "img-src 'self' data:; connect-src 'self';{workers} base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def docs_page_csp(
    page: bytes | memoryview, *, inline_styles: bool = False, blob_workers: bool = False
) -> str:
    """A docs page's policy: `_DOCS_CSP`, with the hash of each inline script of `page`
    (the HTML body), and inline styles and blob workers only if asked for."""
    hashes = "".join(
        " 'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(bytes(page).decode())
    )
    return _DOCS_CSP.format(
        hashes=hashes,
        inline_styles=" 'unsafe-inline'" if inline_styles else "",
        workers=" worker-src blob:;" if blob_workers else "",
    )


class SecurityHeadersMiddleware:
    """Adds the security headers to every HTTP response that does not set them itself."""

    def __init__(
        self, app: ASGIApp, *, hsts_seconds: int = 0, cacheable_prefixes: tuple[str, ...] = ()
    ) -> None:
        self.app = app
        self.cacheable_prefixes = cacheable_prefixes
        self.headers = {
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY",
            "Referrer-Policy": "no-referrer",
            "Content-Security-Policy": API_CSP,
        }
        if hsts_seconds > 0:
            self.headers["Strict-Transport-Security"] = f"max-age={hsts_seconds}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        cacheable = bool(self.cacheable_prefixes) and path.startswith(self.cacheable_prefixes)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", []))
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    headers.setdefault(name, value)
                if not cacheable:
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install_security_headers(
    app: FastAPI, *, hsts_seconds: int, cacheable_prefixes: tuple[str, ...] = ()
) -> None:
    """Wrap the app's whole middleware stack, ServerErrorMiddleware included, so that a
    500 carries the headers too (`add_middleware` would put it inside that one)."""
    build: Callable[[], ASGIApp] = app.build_middleware_stack

    def build_with_security_headers() -> ASGIApp:
        return SecurityHeadersMiddleware(
            build(), hsts_seconds=hsts_seconds, cacheable_prefixes=cacheable_prefixes
        )

    app.build_middleware_stack = build_with_security_headers  # type: ignore[method-assign]
