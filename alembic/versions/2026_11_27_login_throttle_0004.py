"""Login throttle: failed sign-ins counted per username and per client address, shared
by every server process (app/auth/throttle.py).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 16:22:15.876500
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('login_throttle',
    sa.Column('scope', sa.String(length=16), nullable=False),
    sa.Column('subject', sa.String(length=64), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reset_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_attempt_id', sa.Uuid(), nullable=False),
    sa.CheckConstraint("scope IN ('username', 'address')", name=op.f('ck_login_throttle_scope')),
    sa.PrimaryKeyConstraint('scope', 'subject', name=op.f('pk_login_throttle'))
    )
    with op.batch_alter_table('login_throttle', schema=None) as batch_op:
        batch_op.create_index('ix_login_throttle_reset_at', ['reset_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('login_throttle', schema=None) as batch_op:
        batch_op.drop_index('ix_login_throttle_reset_at')

    op.drop_table('login_throttle')
