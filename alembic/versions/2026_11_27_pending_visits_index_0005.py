"""Pending visits index: a partial index on the visits that wait for their household, so
/metrics counts them on every scrape without reading the whole table.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 16:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING = sa.text("fold_state = 'pending'")


def upgrade() -> None:
    op.create_index(
        'ix_visit_pending',
        'visit',
        ['household_id'],
        unique=False,
        postgresql_where=PENDING,
        sqlite_where=PENDING,
    )


def downgrade() -> None:
    op.drop_index(
        'ix_visit_pending',
        table_name='visit',
        postgresql_where=PENDING,
        sqlite_where=PENDING,
    )
