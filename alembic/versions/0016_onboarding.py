"""onboarding and recovery: invitation and password-reset links, terms acceptance

Revision ID: 0016_onboarding
Revises: 0015_rls
Create Date: 2026-12-05

`onboarding_links` holds the single-use, expiring links a person is sent: an invitation to set a first password
(and accept the terms), or a password reset. Only a hash of each token is stored. The link references its user
through the composite tenant key (tenant_id, user_id) -> users (tenant_id, id), and on PostgreSQL the table is under
row-level security with the same policy as every other tenant table (0015). `users.terms_accepted_at` records when
the person accepted the terms of use. `notifications.patient_id` becomes nullable: an invitation or a password
reset sent to a staff member concerns no patient (its payload names the link and the user); the downgrade deletes
those messages.

Migrations must not import application code (backend.*): the models change later, a migration never does.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0016_onboarding"
down_revision: str | Sequence[str] | None = "0015_rls"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ_DATETIME = sa.DateTime(timezone=True)
CURRENT_TENANT = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"
POLICY = "tenant_isolation"
TABLE = "onboarding_links"


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("terms_accepted_at", TZ_DATETIME, nullable=True))
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.alter_column("patient_id", existing_type=sa.Uuid(), nullable=True)
    op.create_table(
        TABLE,
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("purpose", sa.String(length=10), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("expires_at", TZ_DATETIME, nullable=False),
        sa.Column("used_at", TZ_DATETIME, nullable=True),
        sa.Column("revoked_at", TZ_DATETIME, nullable=True),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("created_at", TZ_DATETIME, nullable=False),
        sa.CheckConstraint("purpose IN ('invite', 'reset')", name=op.f("ck_onboarding_links_purpose")),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_onboarding_links_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "user_id"],
            ["users.tenant_id", "users.id"],
            name="fk_onboarding_links_user_id_users",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_onboarding_links")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_onboarding_links_token_hash")),
    )
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_onboarding_links_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_onboarding_links_user_id"), ["user_id"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f'ALTER TABLE "{TABLE}" ENABLE ROW LEVEL SECURITY')
        op.execute(f'ALTER TABLE "{TABLE}" FORCE ROW LEVEL SECURITY')
        op.execute(
            f'CREATE POLICY {POLICY} ON "{TABLE}"'
            f" USING (tenant_id = {CURRENT_TENANT}) WITH CHECK (tenant_id = {CURRENT_TENANT})"
        )


def downgrade() -> None:
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_onboarding_links_user_id"))
        batch_op.drop_index(batch_op.f("ix_onboarding_links_tenant_id"))
    op.drop_table(TABLE)  # its policy goes with it
    op.execute("DELETE FROM notifications WHERE patient_id IS NULL")  # their delivery rows cascade
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.alter_column("patient_id", existing_type=sa.Uuid(), nullable=False)
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("terms_accepted_at")
