"""Every router's prefix and tags, in one place."""

from __future__ import annotations

from fastapi import FastAPI

from app.auth.router import devices_router
from app.auth.router import router as auth_router
from app.ops.router import router as ops_router
from app.sync.router import router as sync_router
from app.visits.router import router as codes_router

API_PREFIX = "/api/v1"

#: Tags in the order a supervisor meets the work in /docs.
TAGS = [
    {
        "name": "Sync (phones)",
        "description": "What the field app calls: push visits, pull the current state, "
        "read the code lists. See docs/PROTOCOL.md.",
    },
    {"name": "Auth", "description": "Sign in, renew tokens, see who you are."},
    {"name": "Admin", "description": "Phones, accounts and the audit log."},
    {"name": "Operations", "description": "Probes for load balancers and monitoring."},
]


def mount_routers(app: FastAPI) -> None:
    app.include_router(sync_router, prefix=f"{API_PREFIX}/sync", tags=["Sync (phones)"])
    app.include_router(codes_router, prefix=API_PREFIX, tags=["Sync (phones)"])
    app.include_router(auth_router, prefix=f"{API_PREFIX}/auth", tags=["Auth"])
    app.include_router(devices_router, prefix=f"{API_PREFIX}/devices", tags=["Admin"])
    app.include_router(ops_router, tags=["Operations"])
