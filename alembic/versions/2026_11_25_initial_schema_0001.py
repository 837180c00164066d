"""Initial schema: settlements, accounts and devices, households, visits, the sync journal,
conflicts and the audit log.

Revision ID: 0001
Revises: 
Create Date: 2026-11-25 23:46:26.741307
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('audit_event',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor_id', sa.Uuid(), nullable=True),
    sa.Column('actor_username', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('entity_type', sa.String(length=32), nullable=False),
    sa.Column('entity_id', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('before', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('after', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_event'))
    )
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_event_action'), ['action'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_event_actor_id'), ['actor_id'], unique=False)
        batch_op.create_index('ix_audit_event_entity', ['entity_type', 'entity_id'], unique=False)
        batch_op.create_index('ix_audit_event_occurred_at', ['occurred_at'], unique=False)

    op.create_table('settlement',
    sa.Column('pcode', sa.String(length=12), nullable=False),
    sa.Column('katottg', sa.String(length=19), nullable=False),
    sa.Column('category', sa.String(length=32), nullable=False),
    sa.Column('name_uk', sa.String(length=120), nullable=False),
    sa.Column('name_en', sa.String(length=120), nullable=False),
    sa.Column('hromada_pcode', sa.String(length=9), nullable=False),
    sa.Column('hromada_uk', sa.String(length=120), nullable=False),
    sa.Column('hromada_en', sa.String(length=120), nullable=False),
    sa.Column('raion_pcode', sa.String(length=6), nullable=False),
    sa.Column('oblast_pcode', sa.String(length=4), nullable=False),
    sa.Column('evacuation_ordered', sa.Boolean(), nullable=False),
    sa.Column('evacuation_ordered_on', sa.Date(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("category IN ('city', 'rural_settlement', 'village', 'urban_type_settlement')", name=op.f('ck_settlement_category')),
    sa.PrimaryKeyConstraint('pcode', name=op.f('pk_settlement')),
    sa.UniqueConstraint('katottg', name=op.f('uq_settlement_katottg'))
    )
    with op.batch_alter_table('settlement', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_settlement_hromada_pcode'), ['hromada_pcode'], unique=False)

    op.create_table('user_account',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('full_name', sa.String(length=200), nullable=False),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("role IN ('field_worker', 'supervisor', 'partner', 'admin')", name=op.f('ck_user_account_role')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_user_account')),
    sa.UniqueConstraint('username', name=op.f('uq_user_account_username'))
    )
    op.create_table('device',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('owner_id', sa.Uuid(), nullable=False),
    sa.Column('label', sa.String(length=120), nullable=False),
    sa.Column('first_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_sync_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('app_version', sa.String(length=64), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['owner_id'], ['user_account.id'], name=op.f('fk_device_owner_id_user_account')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_device'))
    )
    with op.batch_alter_table('device', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_device_owner_id'), ['owner_id'], unique=False)

    op.create_table('household',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('settlement_pcode', sa.String(length=12), nullable=False),
    sa.Column('address', sa.String(length=500), nullable=False),
    sa.Column('lat', sa.Float(), nullable=True),
    sa.Column('lon', sa.Float(), nullable=True),
    sa.Column('accuracy_m', sa.Float(), nullable=True),
    sa.Column('head_name', sa.String(length=200), nullable=False),
    sa.Column('phone', sa.String(length=40), nullable=False),
    sa.Column('members', sa.Integer(), nullable=True),
    sa.Column('members_elderly', sa.Integer(), nullable=True),
    sa.Column('members_children', sa.Integer(), nullable=True),
    sa.Column('members_disabled', sa.Integer(), nullable=True),
    sa.Column('notes', sa.Text(), nullable=False),
    sa.Column('decision', sa.String(length=16), nullable=True),
    sa.Column('reasons', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('needs', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('planned_departure', sa.Date(), nullable=True),
    sa.Column('last_outcome', sa.String(length=24), nullable=True),
    sa.Column('last_visit_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('review', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('merged_into', sa.Uuid(), nullable=True),
    sa.Column('created_by', sa.Uuid(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['created_by'], ['user_account.id'], name=op.f('fk_household_created_by_user_account')),
    sa.ForeignKeyConstraint(['merged_into'], ['household.id'], name=op.f('fk_household_merged_into_household')),
    sa.ForeignKeyConstraint(['settlement_pcode'], ['settlement.pcode'], name=op.f('fk_household_settlement_pcode_settlement')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_household'))
    )
    with op.batch_alter_table('household', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_household_settlement_pcode'), ['settlement_pcode'], unique=False)

    op.create_table('settlement_assignment',
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('settlement_pcode', sa.String(length=12), nullable=False),
    sa.Column('assigned_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['settlement_pcode'], ['settlement.pcode'], name=op.f('fk_settlement_assignment_settlement_pcode_settlement')),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], name=op.f('fk_settlement_assignment_user_id_user_account'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'settlement_pcode', name=op.f('pk_settlement_assignment'))
    )
    with op.batch_alter_table('settlement_assignment', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_settlement_assignment_settlement_pcode'), ['settlement_pcode'], unique=False)

    op.create_table('conflict',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('household_id', sa.Uuid(), nullable=False),
    sa.Column('field', sa.String(length=40), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('candidates', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resolved_by', sa.Uuid(), nullable=True),
    sa.Column('resolution', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('resolution_note', sa.Text(), nullable=False),
    sa.CheckConstraint("status IN ('open', 'resolved')", name=op.f('ck_conflict_status')),
    sa.ForeignKeyConstraint(['household_id'], ['household.id'], name=op.f('fk_conflict_household_id_household')),
    sa.ForeignKeyConstraint(['resolved_by'], ['user_account.id'], name=op.f('fk_conflict_resolved_by_user_account')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_conflict'))
    )
    with op.batch_alter_table('conflict', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_conflict_household_id'), ['household_id'], unique=False)

    op.create_table('refresh_token',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('family_id', sa.Uuid(), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('device_id', sa.Uuid(), nullable=True),
    sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('rotated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['device_id'], ['device.id'], name=op.f('fk_refresh_token_device_id_device')),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], name=op.f('fk_refresh_token_user_id_user_account')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_refresh_token')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_refresh_token_token_hash'))
    )
    with op.batch_alter_table('refresh_token', schema=None) as batch_op:
        batch_op.create_index('ix_refresh_token_family_id', ['family_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_refresh_token_user_id'), ['user_id'], unique=False)

    op.create_table('sync_batch',
    sa.Column('batch_id', sa.Uuid(), nullable=False),
    sa.Column('device_id', sa.Uuid(), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('body_sha256', sa.String(length=64), nullable=False),
    sa.Column('request_body', sa.LargeBinary(), nullable=False),
    sa.Column('response_body', sa.LargeBinary(), nullable=False),
    sa.Column('app_version', sa.String(length=64), nullable=True),
    sa.Column('sent_at_device', sa.DateTime(timezone=True), nullable=True),
    sa.Column('clock_offset_seconds', sa.Float(), nullable=False),
    sa.Column('item_count', sa.Integer(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['device_id'], ['device.id'], name=op.f('fk_sync_batch_device_id_device')),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], name=op.f('fk_sync_batch_user_id_user_account')),
    sa.PrimaryKeyConstraint('batch_id', name=op.f('pk_sync_batch'))
    )
    with op.batch_alter_table('sync_batch', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sync_batch_device_id'), ['device_id'], unique=False)

    op.create_table('visit',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('household_id', sa.Uuid(), nullable=False),
    sa.Column('device_id', sa.Uuid(), nullable=False),
    sa.Column('recorded_by', sa.Uuid(), nullable=False),
    sa.Column('batch_id', sa.Uuid(), nullable=False),
    sa.Column('visited_at_device', sa.DateTime(timezone=True), nullable=False),
    sa.Column('visited_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('clock_corrected', sa.Boolean(), nullable=False),
    sa.Column('future_clamped', sa.Boolean(), nullable=False),
    sa.Column('outcome', sa.String(length=24), nullable=False),
    sa.Column('decision', sa.String(length=16), nullable=True),
    sa.Column('reasons', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('reason_note', sa.Text(), nullable=False),
    sa.Column('leave_mode', sa.String(length=32), nullable=True),
    sa.Column('signed_refusal', sa.Boolean(), nullable=True),
    sa.Column('people_present', sa.Integer(), nullable=True),
    sa.Column('needs', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('planned_departure', sa.Date(), nullable=True),
    sa.Column('destination', sa.Text(), nullable=False),
    sa.Column('consent_to_share', sa.Boolean(), nullable=False),
    sa.Column('lat', sa.Float(), nullable=True),
    sa.Column('lon', sa.Float(), nullable=True),
    sa.Column('accuracy_m', sa.Float(), nullable=True),
    sa.Column('notes', sa.Text(), nullable=False),
    sa.Column('corrects', sa.Uuid(), nullable=True),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('fold_state', sa.String(length=16), nullable=False),
    sa.Column('review_state', sa.String(length=16), nullable=False),
    sa.Column('review_note', sa.Text(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("decision IS NULL OR decision IN ('leave', 'stay', 'undecided')", name=op.f('ck_visit_decision')),
    sa.CheckConstraint("fold_state IN ('pending', 'folded')", name=op.f('ck_visit_fold_state')),
    sa.CheckConstraint("outcome IN ('contacted', 'not_home', 'refused', 'household_left', 'house_damaged')", name=op.f('ck_visit_outcome')),
    sa.CheckConstraint("review_state IN ('unreviewed', 'approved', 'flagged', 'rejected')", name=op.f('ck_visit_review_state')),
    sa.ForeignKeyConstraint(['device_id'], ['device.id'], name=op.f('fk_visit_device_id_device')),
    sa.ForeignKeyConstraint(['recorded_by'], ['user_account.id'], name=op.f('fk_visit_recorded_by_user_account')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_visit'))
    )
    with op.batch_alter_table('visit', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_visit_batch_id'), ['batch_id'], unique=False)
        batch_op.create_index('ix_visit_household_id_visited_at', ['household_id', 'visited_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_visit_recorded_by'), ['recorded_by'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('visit', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_visit_recorded_by'))
        batch_op.drop_index('ix_visit_household_id_visited_at')
        batch_op.drop_index(batch_op.f('ix_visit_batch_id'))

    op.drop_table('visit')
    with op.batch_alter_table('sync_batch', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sync_batch_device_id'))

    op.drop_table('sync_batch')
    with op.batch_alter_table('refresh_token', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_refresh_token_user_id'))
        batch_op.drop_index('ix_refresh_token_family_id')

    op.drop_table('refresh_token')
    with op.batch_alter_table('conflict', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_conflict_household_id'))

    op.drop_table('conflict')
    with op.batch_alter_table('settlement_assignment', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_settlement_assignment_settlement_pcode'))

    op.drop_table('settlement_assignment')
    with op.batch_alter_table('household', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_household_settlement_pcode'))

    op.drop_table('household')
    with op.batch_alter_table('device', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_device_owner_id'))

    op.drop_table('device')
    op.drop_table('user_account')
    with op.batch_alter_table('settlement', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_settlement_hromada_pcode'))

    op.drop_table('settlement')
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_event_occurred_at')
        batch_op.drop_index('ix_audit_event_entity')
        batch_op.drop_index(batch_op.f('ix_audit_event_actor_id'))
        batch_op.drop_index(batch_op.f('ix_audit_event_action'))

    op.drop_table('audit_event')
