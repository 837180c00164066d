"""`create_app()`: settings, database, error handlers and routers, assembled."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.middleware.gzip import GZipMiddleware

from app.api import TAGS, mount_routers
from app.core.config import Settings, get_settings
from app.core.db import create_engine, create_sessionmaker
from app.core.errors import PROBLEM_JSON, install_error_handlers
from app.core.openapi import add_component_schemas
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


def _problem_only_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Error responses are documented as `application/problem+json` only."""
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            for status, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                if str(status).startswith(("4", "5")) and PROBLEM_JSON in content:
                    content.pop("application/json", None)
    return schema


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    engine = create_engine(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await engine.dispose()

    app = FastAPI(
        title="FieldSync",
        version="1.0.0",
        summary="Offline-first sync for humanitarian field teams.",
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
        swagger_ui_parameters={"persistAuthorization": True},
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = create_sessionmaker(engine)
    install_error_handlers(app)
    app.add_middleware(GZipMiddleware, minimum_size=1024, compresslevel=5)
    mount_routers(app)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = _problem_only_errors(FastAPI.openapi(app))
            add_component_schemas(schema, [PushRequest])
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
