"""Every table model, imported in one place for Alembic and the tests."""

from app.audit.models import AuditEvent
from app.auth.models import Device, LoginThrottle, RefreshToken, Role, User
from app.conflicts.models import Conflict, ConflictCandidate
from app.core.db import metadata
from app.households.models import Household, HouseholdEdit
from app.settlements.models import Settlement, SettlementAssignment
from app.sync.models import SyncBatch
from app.visits.models import Visit

__all__ = [
    "AuditEvent",
    "Conflict",
    "ConflictCandidate",
    "Device",
    "Household",
    "HouseholdEdit",
    "LoginThrottle",
    "RefreshToken",
    "Role",
    "Settlement",
    "SettlementAssignment",
    "SyncBatch",
    "User",
    "Visit",
    "metadata",
]
