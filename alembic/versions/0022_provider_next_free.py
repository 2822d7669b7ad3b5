"""provider next free: each provider's next free slot, kept up to date by the changes that move it

Revision ID: 0022_provider_next_free
Revises: 0021_hot_query_indexes
Create Date: 2026-12-05

`provider_next_free`: one row per provider, its earliest free slot within the booking horizon (or none), when it
was computed and until when it holds on its own (the minimum notice, a live hold on an earlier slot expiring).
`version` is raised after every committed change that may move it; `computed_version` is the version the answer
reflects: a search with an empty cache reads these rows by primary key and computes only those not current
(backend/scheduling/next_free.py). No index on what updates change: each stays a HOT update (fillfactor 50).
Under row-level security with the same policy as every other tenant table (0015); the app's role gets its grants
from the default privileges (backend/dbroles.py).

Migrations must not import application code (backend.*): the models change later, a migration never does.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0022_provider_next_free"
down_revision: str | Sequence[str] | None = "0021_hot_query_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ_DATETIME = sa.DateTime(timezone=True)
CURRENT_TENANT = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"
POLICY = "tenant_isolation"
TABLE = "provider_next_free"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("provider_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("computed_version", sa.BigInteger(), nullable=True),
        sa.Column("clinic_id", sa.Uuid(), nullable=True),
        sa.Column("slot_start", TZ_DATETIME, nullable=True),
        sa.Column("slot_end", TZ_DATETIME, nullable=True),
        sa.Column("modality", sa.String(length=20), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=True),
        sa.Column("computed_at", TZ_DATETIME, nullable=True),
        sa.Column("fresh_until", TZ_DATETIME, nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id", "provider_id"],
            ["providers.tenant_id", "providers.id"],
            name="fk_provider_next_free_provider_id_providers",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_provider_next_free_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("provider_id", name=op.f("pk_provider_next_free")),
    )
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_provider_next_free_tenant_id"), ["tenant_id"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        # Every update (a change's mark, a search's answer) touches no indexed column: with half of each page
        # free it stays a HOT update, adds no index entry, and the page prunes its own old versions (autovacuum
        # may be off).
        op.execute(f'ALTER TABLE "{TABLE}" SET (fillfactor = 50)')
        op.execute(f'ALTER TABLE "{TABLE}" ENABLE ROW LEVEL SECURITY')
        op.execute(f'ALTER TABLE "{TABLE}" FORCE ROW LEVEL SECURITY')
        op.execute(
            f'CREATE POLICY {POLICY} ON "{TABLE}"'
            f" USING (tenant_id = {CURRENT_TENANT}) WITH CHECK (tenant_id = {CURRENT_TENANT})"
        )


def downgrade() -> None:
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_provider_next_free_tenant_id"))
    op.drop_table(TABLE)
