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

#: A household that leaves its settlement, is merged into another or is deleted leaves a
#: tombstone under the settlement phones held it in, whichever code wrote it.
PG_TOMBSTONE_FUNCTION = """
CREATE FUNCTION household_tombstone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tombstone (id, household_id, settlement_pcode, reason, merged_into, created_at)
    VALUES (
        gen_random_uuid(), OLD.id, OLD.settlement_pcode,
        CASE WHEN TG_OP = 'DELETE' THEN 'deleted'
             WHEN NEW.merged_into IS NOT NULL AND OLD.merged_into IS NULL THEN 'merged'
             ELSE 'moved' END,
        CASE WHEN TG_OP = 'DELETE' THEN NULL ELSE NEW.merged_into END,
        now()
    );
    RETURN NULL;
END;
$$
"""

_LEAVES = (
    "OLD.settlement_pcode IS NOT NEW.settlement_pcode "
    "OR (OLD.merged_into IS NULL AND NEW.merged_into IS NOT NULL)"
)
_SQLITE_NOW = (
    "strftime('%Y-%m-%d %H:%M:%S', 'now') || substr(strftime('%f', 'now'), 3) || '000'"
)


def feed_triggers(dialect: str) -> list[str]:
    """The statements that create the feed's triggers. On SQLite, a migration that
    rebuilds one of these tables (batch_alter_table) drops its triggers: run these again
    after it (tests/test_migrations.py checks they are there at head)."""
    if dialect == 'postgresql':
        stamps = [
            f"CREATE TRIGGER {table}_feed BEFORE INSERT OR UPDATE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION feed_stamp()"
            for table in FEED_TABLES
        ]
        return [
            *stamps,
            "CREATE TRIGGER household_tombstone_update AFTER UPDATE OF settlement_pcode, "
            "merged_into ON household FOR EACH ROW WHEN ("
            "OLD.settlement_pcode IS DISTINCT FROM NEW.settlement_pcode "
            "OR (OLD.merged_into IS NULL AND NEW.merged_into IS NOT NULL)) "
            "EXECUTE FUNCTION household_tombstone()",
            "CREATE TRIGGER household_tombstone_delete AFTER DELETE ON household "
            "FOR EACH ROW EXECUTE FUNCTION household_tombstone()",
        ]
    statements = []
    for table, key in FEED_TABLES.items():
        for event in ("INSERT", "UPDATE"):
            # A trigger's own UPDATE does not fire it again (recursive_triggers is off).
            statements.append(
                f"CREATE TRIGGER {table}_feed_{event.lower()} AFTER {event} ON {table} "
                "BEGIN "
                "UPDATE feed_state SET last_seq = last_seq + 1 WHERE id = 1; "
                f"UPDATE {table} SET feed_seq = (SELECT last_seq FROM feed_state WHERE id = 1) "
                f"WHERE {key} = NEW.{key}; "
                "END"
            )
    tombstone = (
        "INSERT INTO tombstone (id, household_id, settlement_pcode, reason, merged_into, "
        "created_at, feed_txid, feed_seq) VALUES (lower(hex(randomblob(16))), OLD.id, "
        "OLD.settlement_pcode, {reason}, {merged_into}, " + _SQLITE_NOW + ", 0, 0); "
    )
    merged_or_moved = (
        "CASE WHEN OLD.merged_into IS NULL AND NEW.merged_into IS NOT NULL "
        "THEN 'merged' ELSE 'moved' END"
    )
    statements.append(
        "CREATE TRIGGER household_tombstone_update AFTER UPDATE OF settlement_pcode, "
        f"merged_into ON household WHEN {_LEAVES} BEGIN "
        + tombstone.format(reason=merged_or_moved, merged_into="NEW.merged_into")
        + "END"
    )
    statements.append(
        "CREATE TRIGGER household_tombstone_delete AFTER DELETE ON household BEGIN "
        + tombstone.format(reason="'deleted'", merged_into="NULL")
        + "END"
    )
    return statements


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
        op.execute(PG_TOMBSTONE_FUNCTION)
    for statement in feed_triggers(op.get_bind().dialect.name):
        op.execute(statement)
    # Rows already stored enter the feed.
    for table in FEED_TABLES:
        op.execute(f"UPDATE {table} SET feed_seq = feed_seq")  # noqa: S608


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        for table in FEED_TABLES:
            op.execute(f"DROP TRIGGER {table}_feed ON {table}")
        op.execute("DROP FUNCTION feed_stamp()")
        op.execute("DROP SEQUENCE feed_seq")
        op.execute("DROP TRIGGER household_tombstone_update ON household")
        op.execute("DROP TRIGGER household_tombstone_delete ON household")
        op.execute("DROP FUNCTION household_tombstone()")
    else:
        for table in FEED_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_feed_insert")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_feed_update")
        op.execute("DROP TRIGGER IF EXISTS household_tombstone_update")
        op.execute("DROP TRIGGER IF EXISTS household_tombstone_delete")
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
