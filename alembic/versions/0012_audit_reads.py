"""audit of reads: batched access rows, hash chain, append-only

Revision ID: 0012_audit_reads
Revises: 0011_idle_logoff
Create Date: 2026-12-05

* `audit_access_events`: one row per request or page load that showed patient data, naming the patients.
* Both audit tables get a per-practice hash chain (`chain_seq`, `prev_hash`, `row_hash`); existing
  `audit_events` rows are chained here, in (occurred_at, id) order, with the algorithm of this revision.
* Both tables are append-only: triggers refuse UPDATE, DELETE (and on PostgreSQL TRUNCATE), for every role,
  the superuser included. Removing old rows is an operator's act: disable the trigger as the table owner.

Migrations must not import application code (backend.*): the models change later, a migration never does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "0012_audit_reads"
down_revision: str | Sequence[str] | None = "0011_idle_logoff"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
TZ_DATETIME = sa.DateTime(timezone=True)
GENESIS = "0" * 64
TABLES = ("audit_events", "audit_access_events")


def _chain_columns() -> list[sa.Column]:
    return [
        sa.Column("chain_seq", sa.BigInteger(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("row_hash", sa.String(length=64), nullable=False),
    ]


def _iso(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _s(value: Any) -> str | None:
    return None if value is None else str(value)


def _chain_existing_audit_events() -> None:
    """Chain the rows written before this revision (backend.audit.chain.canonical_content as of now)."""
    bind = op.get_bind()
    events = sa.table(
        "audit_events",
        sa.column("id", sa.Uuid()),
        sa.column("tenant_id", sa.Uuid()),
        sa.column("occurred_at", TZ_DATETIME),
        sa.column("actor_user_id", sa.Uuid()),
        sa.column("actor_role", sa.String()),
        sa.column("action", sa.String()),
        sa.column("entity_type", sa.String()),
        sa.column("entity_id", sa.Uuid()),
        sa.column("data", JSON),
        sa.column("chain_seq", sa.BigInteger()),
        sa.column("prev_hash", sa.String()),
        sa.column("row_hash", sa.String()),
    )
    rows = (
        bind.execute(sa.select(events).order_by(events.c.tenant_id, events.c.occurred_at, events.c.id)).mappings().all()
    )
    heads: dict[Any, tuple[int, str]] = {}
    for row in rows:
        seq, prev = heads.get(row["tenant_id"], (0, GENESIS))
        seq += 1
        content = {
            "table": "audit_events",
            "id": _s(row["id"]),
            "tenant_id": _s(row["tenant_id"]),
            "chain_seq": seq,
            "occurred_at": _iso(row["occurred_at"]),
            "actor_user_id": _s(row["actor_user_id"]),
            "actor_role": row["actor_role"],
            "action": row["action"],
            "entity_type": row["entity_type"],
            "entity_id": _s(row["entity_id"]),
            "data": row["data"] or {},
        }
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
        digest = hashlib.sha256(f"{prev}\n{canonical}".encode()).hexdigest()
        bind.execute(
            events.update().where(events.c.id == row["id"]).values(chain_seq=seq, prev_hash=prev, row_hash=digest)
        )
        heads[row["tenant_id"]] = (seq, digest)


def _protect(table: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION audit_append_only()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()"
        )
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
            )


def _unprotect(table: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
    else:
        for verb in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{verb}")


def upgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        for column in _chain_columns():
            column.nullable = True
            batch_op.add_column(column)
    _chain_existing_audit_events()
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.alter_column("chain_seq", existing_type=sa.BigInteger(), nullable=False)
        batch_op.alter_column("prev_hash", existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column("row_hash", existing_type=sa.String(length=64), nullable=False)
        batch_op.create_index("uq_audit_events_chain", ["tenant_id", "chain_seq"], unique=True)

    op.create_table(
        "audit_access_events",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("occurred_at", TZ_DATETIME, nullable=False),
        sa.Column("actor_user_id", sa.Uuid(), nullable=True),
        sa.Column("actor_role", sa.String(length=20), nullable=False),
        sa.Column("action", sa.String(length=80), nullable=False),
        sa.Column("patient_ids", JSON, nullable=False),
        sa.Column("patient_count", sa.Integer(), nullable=False),
        sa.Column("via", sa.String(length=200), nullable=False),
        sa.Column("client_address", sa.String(length=64), nullable=True),
        *_chain_columns(),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_audit_access_events_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_access_events")),
    )
    op.create_index(op.f("ix_audit_access_events_tenant_id"), "audit_access_events", ["tenant_id"])
    op.create_index("ix_audit_access_events_tenant_time", "audit_access_events", ["tenant_id", "occurred_at"])
    op.create_index(
        "ix_audit_access_events_actor", "audit_access_events", ["tenant_id", "actor_user_id", "occurred_at"]
    )
    op.create_index("uq_audit_access_events_chain", "audit_access_events", ["tenant_id", "chain_seq"], unique=True)

    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
                    USING ERRCODE = 'insufficient_privilege';
            END
            $$
            """
        )
    for table in TABLES:
        _protect(table)


def downgrade() -> None:
    for table in TABLES:
        _unprotect(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS audit_append_only()")
    op.drop_table("audit_access_events")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index("uq_audit_events_chain")
        batch_op.drop_column("row_hash")
        batch_op.drop_column("prev_hash")
        batch_op.drop_column("chain_seq")
