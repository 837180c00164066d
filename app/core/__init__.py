"""Cross-cutting infrastructure: settings, database, errors, security. Imports no domain.

The naming convention is set here, on the shared SQLModel metadata, because a
constraint takes its name when it is attached to its table: it must be in place
before any table model is defined, and every models module imports `app.core`.
"""

from sqlmodel import SQLModel

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SQLModel.metadata.naming_convention = NAMING_CONVENTION
