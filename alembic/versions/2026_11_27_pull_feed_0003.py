"""Pull feed: every household, settlement and tombstone row carries its place in the
feed, stamped by a trigger on every write (see app/sync/feed.py for why a transaction id
and then a sequence number), plus tombstones and the feed's prune mark.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 11:29:04.099237
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The tables whose rows phones pull, with their primary key.
FEED_TABLES = {'household': 'id', 'settlement': 'pcode', 'tombstone': 'id'}

#: PostgreSQL: the writing transaction's id, then a number from a sequence.
PG_STAMP_FUNCTION = """
CREATE FUNCTION feed_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.feed_txid := pg_current_xact_id()::text::bigint;
    NEW.feed_seq := nextval('feed_seq');
    RETURN NEW;
END;
$$
"""


def upgrade() -> None:
    op.create_table('feed_state',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('pruned_txid', sa.BigInteger(), nullable=False),
    sa.Column('pruned_seq', sa.BigInteger(), nullable=False),
    sa.Column('last_seq', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_feed_state'))
    )
    op.create_table('tombstone',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('household_id', sa.Uuid(), nullable=False),
    sa.Column('settlement_pcode', sa.String(length=12), nullable=False),
    sa.Column('reason', sa.String(length=16), nullable=False),
    sa.Column('merged_into', sa.Uuid(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('feed_txid', sa.BigInteger(), nullable=False),
    sa.Column('feed_seq', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['settlement_pcode'], ['settlement.pcode'], name=op.f('fk_tombstone_settlement_pcode_settlement')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tombstone'))
    )
    with op.batch_alter_table('tombstone', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tombstone_created_at'), ['created_at'], unique=False)
        batch_op.create_index('ix_tombstone_feed', ['feed_txid', 'feed_seq'], unique=False)
        batch_op.create_index('ix_tombstone_settlement_feed', ['settlement_pcode', 'feed_txid', 'feed_seq'], unique=False)

    with op.batch_alter_table('household', schema=None) as batch_op:
        batch_op.add_column(sa.Column('feed_txid', sa.BigInteger(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('feed_seq', sa.BigInteger(), nullable=False, server_default='0'))
        batch_op.create_index('ix_household_feed', ['feed_txid', 'feed_seq'], unique=False)
        batch_op.create_index('ix_household_settlement_feed', ['settlement_pcode', 'feed_txid', 'feed_seq'], unique=False)

    with op.batch_alter_table('settlement', schema=None) as batch_op:
        batch_op.add_column(sa.Column('feed_txid', sa.BigInteger(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('feed_seq', sa.BigInteger(), nullable=False, server_default='0'))
        batch_op.create_index('ix_settlement_feed', ['feed_txid', 'feed_seq'], unique=False)

    for table in FEED_TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column('feed_txid', server_default=None)
            batch_op.alter_column('feed_seq', server_default=None)
    op.execute("INSERT INTO feed_state (id, pruned_txid, pruned_seq, last_seq) VALUES (1, 0, 0, 0)")
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("CREATE SEQUENCE feed_seq AS bigint")
        op.execute(PG_STAMP_FUNCTION)
        for table in FEED_TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_feed BEFORE INSERT OR UPDATE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION feed_stamp()"
            )
    else:
        for table, key in FEED_TABLES.items():
            for event, when in (("INSERT", ""), ("UPDATE", "WHEN NEW.feed_seq IS OLD.feed_seq")):
                op.execute(
                    f"CREATE TRIGGER {table}_feed_{event.lower()} AFTER {event} ON {table} {when} "
                    "BEGIN "
                    "UPDATE feed_state SET last_seq = last_seq + 1 WHERE id = 1; "
                    f"UPDATE {table} SET feed_seq = (SELECT last_seq FROM feed_state WHERE id = 1) "
                    f"WHERE {key} = NEW.{key}; "
                    "END"
                )
    # Rows already stored enter the feed.
    for table, key in FEED_TABLES.items():
        op.execute(f"UPDATE {table} SET {key} = {key}")


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        for table in FEED_TABLES:
            op.execute(f"DROP TRIGGER {table}_feed ON {table}")
        op.execute("DROP FUNCTION feed_stamp()")
        op.execute("DROP SEQUENCE feed_seq")
    else:
        for table in FEED_TABLES:
            op.execute(f"DROP TRIGGER {table}_feed_insert")
            op.execute(f"DROP TRIGGER {table}_feed_update")
    with op.batch_alter_table('settlement', schema=None) as batch_op:
        batch_op.drop_index('ix_settlement_feed')
        batch_op.drop_column('feed_seq')
        batch_op.drop_column('feed_txid')

    with op.batch_alter_table('household', schema=None) as batch_op:
        batch_op.drop_index('ix_household_settlement_feed')
        batch_op.drop_index('ix_household_feed')
        batch_op.drop_column('feed_seq')
        batch_op.drop_column('feed_txid')

    with op.batch_alter_table('tombstone', schema=None) as batch_op:
        batch_op.drop_index('ix_tombstone_settlement_feed')
        batch_op.drop_index('ix_tombstone_feed')
        batch_op.drop_index(batch_op.f('ix_tombstone_created_at'))

    op.drop_table('tombstone')
    op.drop_table('feed_state')
