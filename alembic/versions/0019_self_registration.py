"""self-registration: a practice may let patients create their own account, verified by e-mail

Revision ID: 0019_self_registration
Revises: 0018_audit_chain_shards
Create Date: 2026-12-06

`tenants.self_registration_enabled` (off for every practice, existing ones included) lets patients register
themselves. `registrations` holds each request until its e-mail is verified: the name, e-mail, optional mobile and
language the person gave, the hash of the password they chose, and the hash of the single-use, expiring link's
token ('verify'); or the note that the e-mail already had an account, whose owner was told instead ('exists').
No user, patient or membership exists before the link is opened. The row references a user (the existing account,
or the one the verification created) through the composite tenant key, and on PostgreSQL the table is under
row-level security with the same policy as every other tenant table (0015).

Migrations must not import application code (backend.*): the models change later, a migration never does.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0019_self_registration"
down_revision: str | Sequence[str] | None = "0018_audit_chain_shards"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ_DATETIME = sa.DateTime(timezone=True)
CURRENT_TENANT = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"
POLICY = "tenant_isolation"
TABLE = "registrations"


def upgrade() -> None:
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("self_registration_enabled", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_table(
        TABLE,
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("full_name", sa.String(length=200), nullable=False),
        sa.Column("phone", sa.String(length=40), nullable=False),
        sa.Column("locale", sa.String(length=10), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("expires_at", TZ_DATETIME, nullable=False),
        sa.Column("terms_accepted_at", TZ_DATETIME, nullable=True),
        sa.Column("used_at", TZ_DATETIME, nullable=True),
        sa.Column("revoked_at", TZ_DATETIME, nullable=True),
        sa.Column("created_at", TZ_DATETIME, nullable=False),
        sa.CheckConstraint("kind IN ('verify', 'exists')", name=op.f("ck_registrations_kind")),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_registrations_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "user_id"],
            ["users.tenant_id", "users.id"],
            name="fk_registrations_user_id_users",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registrations")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_registrations_token_hash")),
    )
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_registrations_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_registrations_email"), ["email"], unique=False)
        batch_op.create_index(batch_op.f("ix_registrations_user_id"), ["user_id"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f'ALTER TABLE "{TABLE}" ENABLE ROW LEVEL SECURITY')
        op.execute(f'ALTER TABLE "{TABLE}" FORCE ROW LEVEL SECURITY')
        op.execute(
            f'CREATE POLICY {POLICY} ON "{TABLE}"'
            f" USING (tenant_id = {CURRENT_TENANT}) WITH CHECK (tenant_id = {CURRENT_TENANT})"
        )


def downgrade() -> None:
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_registrations_user_id"))
        batch_op.drop_index(batch_op.f("ix_registrations_email"))
        batch_op.drop_index(batch_op.f("ix_registrations_tenant_id"))
    op.drop_table(TABLE)  # its policy goes with it
    # The messages about registrations name rows that no longer exist (their delivery rows cascade).
    op.execute("DELETE FROM notifications WHERE event_type IN ('registration_verify', 'registration_exists')")
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.drop_column("self_registration_enabled")
