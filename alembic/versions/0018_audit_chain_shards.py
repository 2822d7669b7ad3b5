"""audit chains in shards: each practice's audit tables hold several independent hash chains

Revision ID: 0018_audit_chain_shards
Revises: 0017_practice_texts
Create Date: 2026-12-05

One chain per practice and table made every audited write of a practice wait for the one before it to commit
(the chain's lock is held from the row's position to the end of the commit): at eight concurrent bookings of one
practice that queue cost a sixth of the throughput. Each practice and table now has AUDIT_CHAIN_SHARDS chains
(`chain_shard` 0..7); a writer takes the lowest free one, so concurrent writers rarely wait, and one writer at a
time keeps to shard 0. Every chain is checked as
before (positions 1, 2, 3 ..., each row linked to the previous row's hash); existing rows form shard 0, unchanged
(the shard is not part of the hashed content: moving a row to another shard breaks both chains' links).

PostgreSQL: `audit_chain_claim` locks a free shard and reads its head in one round trip (its statements each see
the rows committed before the lock was granted).

Migrations must not import application code (backend.*): the models change later, a migration never does.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0018_audit_chain_shards"
down_revision: str | Sequence[str] | None = "0017_practice_texts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("audit_events", "audit_access_events")

CLAIM = """
CREATE OR REPLACE FUNCTION audit_chain_claim(
    p_table text, p_lock_class integer, p_tenant uuid, p_tenant_key integer, p_first integer, p_shards integer,
    OUT shard integer, OUT seq bigint, OUT hash text
) LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    i integer;
BEGIN
    -- The first shard nobody holds, from p_first on; if all are held, wait for p_first's.
    FOR i IN 0 .. p_shards - 1 LOOP
        IF pg_try_advisory_xact_lock(p_lock_class + (p_first + i) % p_shards, p_tenant_key) THEN
            shard := (p_first + i) % p_shards;
            EXIT;
        END IF;
    END LOOP;
    IF shard IS NULL THEN
        shard := p_first % p_shards;
        PERFORM pg_advisory_xact_lock(p_lock_class + shard, p_tenant_key);
    END IF;
    -- A new statement, so a new snapshot: it sees every row committed before the lock was granted.
    IF p_table = 'audit_events' THEN
        SELECT e.chain_seq, e.row_hash INTO seq, hash FROM audit_events e
        WHERE e.tenant_id = p_tenant AND e.chain_shard = shard ORDER BY e.chain_seq DESC LIMIT 1;
    ELSIF p_table = 'audit_access_events' THEN
        SELECT e.chain_seq, e.row_hash INTO seq, hash FROM audit_access_events e
        WHERE e.tenant_id = p_tenant AND e.chain_shard = shard ORDER BY e.chain_seq DESC LIMIT 1;
    ELSE
        RAISE EXCEPTION 'audit_chain_claim: unknown table %', p_table;
    END IF;
END
$$
"""


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("chain_shard", sa.SmallInteger(), nullable=False, server_default="0"))
        op.drop_index(f"uq_{table}_chain", table_name=table)
        op.create_index(f"uq_{table}_chain", table, ["tenant_id", "chain_shard", "chain_seq"], unique=True)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(CLAIM)


def downgrade() -> None:
    # Only while every row is still in shard 0: other shards' rows cannot be merged into one chain.
    bind = op.get_bind()
    for table in TABLES:
        spread = bind.execute(sa.text(f"SELECT count(*) FROM {table} WHERE chain_shard <> 0")).scalar_one()  # noqa: S608
        if spread:
            raise RuntimeError(f"{table}: {spread} rows are in shards other than 0; a single chain cannot hold them")
    if bind.dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS audit_chain_claim(text, integer, uuid, integer, integer, integer)")
    for table in TABLES:
        op.drop_index(f"uq_{table}_chain", table_name=table)
        op.create_index(f"uq_{table}_chain", table, ["tenant_id", "chain_seq"], unique=True)
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("chain_shard")
