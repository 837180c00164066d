"""`create_app()`: settings, database, error handlers and routers, assembled."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.gzip import DEFAULT_EXCLUDED_CONTENT_TYPES, GZipMiddleware
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from app.api import API_PREFIX, TAGS, mount_routers
from app.auth.throttle import LoginLimiter, ThrottlePolicy
from app.core import metrics
from app.core.body_encoding import RequestDecompressionMiddleware
from app.core.body_limit import BodySizeLimitMiddleware
from app.core.config import Settings, get_settings
from app.core.cors import install_cors
from app.core.db import create_engine, create_sessionmaker
from app.core.errors import PROBLEM_JSON, install_error_handlers
from app.core.headers import docs_page_csp, install_security_headers
from app.core.openapi import add_component_schemas
from app.core.telemetry import install_telemetry
from app.exports.formats import MEDIA_TYPES
from app.sync.schemas import PushRequest

DESCRIPTION = """
FieldSync is the server behind the phones of field teams who go door to door in
settlements under an evacuation order and record, for each household, whether it
will stay or leave and why.

* **Phones** push their visits and pull the current state (the *Sync* section).
* **Supervisors** review visits, resolve conflicts and merge duplicate households.
* **Partners** download pseudonymised exports.

Press **Authorize** and sign in with your username and password to try a call.
All data shown in examples is synthetic.
"""

#: Where the docs pages' scripts, stylesheet and icon are served from: the Swagger UI
#: and ReDoc bundles the pinned `fastapi-offline` package ships, so /docs and /redoc
#: work at a field office with no internet (no CDN, no web fonts).
DOCS_ASSETS_URL = "/docs-assets"
DOCS_ASSETS_PACKAGE = ("fastapi_offline", "static")


def _problem_only_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Error responses are documented as `application/problem+json` only."""
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            for status, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                if str(status).startswith(("4", "5")) and PROBLEM_JSON in content:
                    content.pop("application/json", None)
    return schema


def _mount_docs(app: FastAPI) -> None:
    """Swagger UI at /docs (with its OAuth2 redirect) and ReDoc at /redoc, offline."""
    assert app.openapi_url is not None
    assert app.swagger_ui_oauth2_redirect_url is not None
    openapi_url = app.openapi_url
    oauth2_redirect_url = app.swagger_ui_oauth2_redirect_url
    app.mount(DOCS_ASSETS_URL, StaticFiles(packages=[DOCS_ASSETS_PACKAGE]), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        page = get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=root + oauth2_redirect_url,
            swagger_js_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS_URL}/favicon.png",
            swagger_ui_parameters=app.swagger_ui_parameters,
        )
        page.headers["Content-Security-Policy"] = docs_page_csp(page.body)
        return page

    @app.get(oauth2_redirect_url, include_in_schema=False)
    async def swagger_ui_oauth2_redirect() -> HTMLResponse:
        page = get_swagger_ui_oauth2_redirect_html()
        page.headers["Content-Security-Policy"] = docs_page_csp(page.body)
        return page

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        page = get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{DOCS_ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
        # ReDoc's "API docs by Redocly" footer loads its logo from Redocly's CDN (it hides
        # the image when that fails): the policy allows images from this server only, so
        # nothing is asked of the internet and an offline office waits on nothing.
        page.headers["Content-Security-Policy"] = docs_page_csp(
            page.body, inline_styles=True, blob_workers=True
        )
        return page


def _install_guards(app: FastAPI, settings: Settings) -> None:
    """gzip request bodies, body-size limits, CORS and proxy headers (each added outside
    the one before), and security headers around the whole stack."""
    push = f"{API_PREFIX}/sync/push"  # reads and inflates its body itself
    app.add_middleware(
        RequestDecompressionMiddleware, max_bytes=settings.max_body_bytes, own_paths=[push]
    )
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        path_limits={push: settings.batch_max_bytes},
    )
    install_cors(app, settings.cors_allowed_origins)
    if settings.trusted_proxies:
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)
    install_security_headers(
        app, hsts_seconds=settings.hsts_seconds, cacheable_prefixes=(f"{DOCS_ASSETS_URL}/",)
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    engine = create_engine(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await engine.dispose()
        metrics.forget_this_process()

    app = FastAPI(
        title="FieldSync",
        version="1.0.0",
        summary="Offline-first sync for humanitarian field teams.",
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
        swagger_ui_parameters={"persistAuthorization": True},
        docs_url=None,  # served by _mount_docs from local assets
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = create_sessionmaker(engine)
    app.state.login_limiter = LoginLimiter(
        app.state.sessionmaker, ThrottlePolicy.from_settings(settings)
    )
    install_error_handlers(app)
    app.add_middleware(
        GZipMiddleware,
        minimum_size=1024,
        compresslevel=5,
        # An XLSX file is a zip: gzip would spend the CPU and save nothing.
        exclude_content_types=(*DEFAULT_EXCLUDED_CONTENT_TYPES, MEDIA_TYPES["xlsx"]),
    )
    _install_guards(app, settings)
    # Around everything else (installed last): its latency and access log cover every
    # layer, and every response, a 500 too, carries the request id.
    install_telemetry(app)
    mount_routers(app)
    _mount_docs(app)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = _problem_only_errors(FastAPI.openapi(app))
            add_component_schemas(schema, [PushRequest])
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
