"""Push sync: household edits as observations, per-field fold stamps, consent in the
canonical state, at most one open conflict per household and field, and conflict
candidates as rows of their own (appended, never rewritten).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 23:55:19.261841
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('household_edit',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('household_id', sa.Uuid(), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('device_id', sa.Uuid(), nullable=False),
    sa.Column('recorded_by', sa.Uuid(), nullable=False),
    sa.Column('batch_id', sa.Uuid(), nullable=False),
    sa.Column('observed_at_device', sa.DateTime(timezone=True), nullable=False),
    sa.Column('observed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('future_clamped', sa.Boolean(), nullable=False),
    sa.Column('base_version', sa.Integer(), nullable=True),
    sa.Column('fields', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['device_id'], ['device.id'], name=op.f('fk_household_edit_device_id_device')),
    sa.ForeignKeyConstraint(['recorded_by'], ['user_account.id'], name=op.f('fk_household_edit_recorded_by_user_account')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_household_edit')),
    sa.UniqueConstraint('content_hash', name=op.f('uq_household_edit_content_hash'))
    )
    with op.batch_alter_table('household_edit', schema=None) as batch_op:
        batch_op.create_index('ix_household_edit_household_id', ['household_id'], unique=False)

    op.create_table('conflict_candidate',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('conflict_id', sa.Uuid(), nullable=False),
    sa.Column('item_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('value', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('recorded_by', sa.Uuid(), nullable=False),
    sa.Column('device_id', sa.Uuid(), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('added_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['conflict_id'], ['conflict.id'], name=op.f('fk_conflict_candidate_conflict_id_conflict'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_conflict_candidate')),
    sa.UniqueConstraint('conflict_id', 'item_id', name=op.f('uq_conflict_candidate_conflict_id_item_id'))
    )
    with op.batch_alter_table('conflict', schema=None) as batch_op:
        batch_op.drop_column('candidates')

    with op.batch_alter_table('conflict', schema=None) as batch_op:
        batch_op.create_index('uq_conflict_open_household_field', ['household_id', 'field'], unique=True, postgresql_where=sa.text("status = 'open'"), sqlite_where=sa.text("status = 'open'"))

    with op.batch_alter_table('household', schema=None) as batch_op:
        batch_op.add_column(sa.Column('consent_to_share', sa.Boolean(), nullable=True))
        # Existing households start with no stamps; the default is dropped right after.
        batch_op.add_column(sa.Column('field_stamps', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False, server_default=sa.text("'{}'")))

    with op.batch_alter_table('household', schema=None) as batch_op:
        batch_op.alter_column('field_stamps', server_default=None)

    with op.batch_alter_table('visit', schema=None) as batch_op:
        batch_op.create_index('ix_visit_corrects', ['corrects'], unique=False)
        # Nothing reads visits by batch; each index costs every push.
        batch_op.drop_index('ix_visit_batch_id')



def downgrade() -> None:
    with op.batch_alter_table('visit', schema=None) as batch_op:
        batch_op.create_index('ix_visit_batch_id', ['batch_id'], unique=False)
        batch_op.drop_index('ix_visit_corrects')

    with op.batch_alter_table('household', schema=None) as batch_op:
        batch_op.drop_column('field_stamps')
        batch_op.drop_column('consent_to_share')

    with op.batch_alter_table('conflict', schema=None) as batch_op:
        batch_op.add_column(sa.Column('candidates', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False, server_default=sa.text("'[]'")))
        batch_op.drop_index('uq_conflict_open_household_field', postgresql_where=sa.text("status = 'open'"), sqlite_where=sa.text("status = 'open'"))

    with op.batch_alter_table('household_edit', schema=None) as batch_op:
        batch_op.drop_index('ix_household_edit_household_id')

    op.drop_table('household_edit')
    op.drop_table('conflict_candidate')
