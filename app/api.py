"""Every router's prefix and tags, in one place."""

from __future__ import annotations

from fastapi import FastAPI

from app.audit.router import router as audit_router
from app.auth.router import devices_router, users_router
from app.auth.router import router as auth_router
from app.exports.router import router as exports_router
from app.ops.router import router as ops_router
from app.review.router import router as review_router
from app.settlements.router import router as settlements_router
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
    {
        "name": "Review",
        "description": "Find households and visits in your settlements, read a household's "
        "whole history, and approve, flag or reject visits. A rejected visit stops counting "
        "and the household's state is worked out again without it.",
    },
    {
        "name": "Conflicts",
        "description": "Where workers disagree (different decisions for one household, or an "
        "edit made on an old copy), choose the right value or enter one. Phones get the "
        "result on their next pull.",
    },
    {
        "name": "Households",
        "description": "Find households registered twice and merge them into one.",
    },
    {
        "name": "Settlements",
        "description": "Each settlement's progress: households, visits, decisions, needs.",
    },
    {
        "name": "Exports",
        "description": "Files for humanitarian partners: pseudonymised and consent-respecting.",
    },
    {"name": "Admin", "description": "Phones, accounts and the audit log."},
    {"name": "Auth", "description": "Sign in, renew tokens, see who you are."},
    {"name": "Operations", "description": "Probes for load balancers and monitoring."},
]


def mount_routers(app: FastAPI) -> None:
    app.include_router(sync_router, prefix=f"{API_PREFIX}/sync", tags=["Sync (phones)"])
    app.include_router(codes_router, prefix=API_PREFIX, tags=["Sync (phones)"])
    app.include_router(review_router, prefix=API_PREFIX)  # tags per route
    app.include_router(exports_router, prefix=f"{API_PREFIX}/exports", tags=["Exports"])
    app.include_router(auth_router, prefix=f"{API_PREFIX}/auth", tags=["Auth"])
    app.include_router(devices_router, prefix=f"{API_PREFIX}/devices", tags=["Admin"])
    app.include_router(users_router, prefix=f"{API_PREFIX}/users", tags=["Admin"])
    app.include_router(settlements_router, prefix=f"{API_PREFIX}/settlements", tags=["Settlements"])
    app.include_router(audit_router, prefix=f"{API_PREFIX}/audit", tags=["Admin"])
    app.include_router(ops_router, tags=["Operations"])
