"""Cross-origin calls from browser pages: closed unless FIELDSYNC_CORS_ALLOWED_ORIGINS
lists the origins (scheme://host[:port]) that may call the API.

Closed means no CORS middleware at all: no response carries an `Access-Control-*`
header, so a browser lets no other site's page read an answer (a preflight gets the
router's 405). Opened, Starlette's CORSMiddleware answers preflights and marks the
answers to the listed origins only; the API signs in with bearer tokens, never cookies,
so credentials are not allowed. A refused preflight is a problem document like every
other error.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

from app.core.errors import problem_response

ALLOWED_METHODS = ("GET", "POST")
ALLOWED_HEADERS = ("Authorization", "Content-Type", "Content-Encoding")
#: Headers a page may read besides the safelisted ones.
EXPOSED_HEADERS = ("Retry-After", "Content-Disposition")
PREFLIGHT_MAX_AGE_SECONDS = 600


class ProblemCORSMiddleware(CORSMiddleware):
    """Starlette's CORSMiddleware, with a refused preflight answered as a problem
    document that grants nothing (no `Access-Control-*` header)."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        detail = bytes(response.body).decode()  # "Disallowed CORS origin, method, ..."
        return problem_response(
            400, f"{detail}.", headers={"Vary": response.headers.get("vary", "Origin")}
        )


def install_cors(app: FastAPI, origins: Sequence[str]) -> None:
    """Open the API to `origins`; with none, leave CORS closed."""
    if not origins:
        return
    app.add_middleware(
        ProblemCORSMiddleware,
        allow_origins=list(origins),
        allow_methods=ALLOWED_METHODS,
        allow_headers=ALLOWED_HEADERS,
        expose_headers=EXPOSED_HEADERS,
        allow_credentials=False,
        max_age=PREFLIGHT_MAX_AGE_SECONDS,
    )
