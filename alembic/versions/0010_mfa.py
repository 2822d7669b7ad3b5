"""MFA: TOTP secrets (encrypted), recovery codes, used-code replay guard

Revision ID: 0010_mfa
Revises: 0009_delivery_fencing
Create Date: 2026-12-05

Users get an encrypted TOTP secret (and the one being enrolled), the time of enrolment and the last accepted time
step (a code at or before it is refused as a replay). Recovery codes live in their own table as salted hashes.
A browser session can be limited to the enrolment page (`mfa_enrolment_only`), and a practice can require MFA of
its clinicians (`tenants.mfa_required_for_clinicians`; admins always need it). Existing rows: nobody enrolled,
no session limited, clinicians not required.

Migrations must not import application code (backend.*): the models change later, a migration never does.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0010_mfa"
down_revision: str | Sequence[str] | None = "0009_delivery_fencing"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mfa_secret_encrypted", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("mfa_pending_secret_encrypted", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("mfa_enabled_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("mfa_last_step", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("user_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mfa_enrolment_only", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("mfa_required_for_clinicians", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_table(
        "mfa_recovery_codes",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("code_hash", sa.String(length=200), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("mfa_recovery_codes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_mfa_recovery_codes_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_mfa_recovery_codes_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("mfa_recovery_codes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mfa_recovery_codes_user_id"))
        batch_op.drop_index(batch_op.f("ix_mfa_recovery_codes_tenant_id"))
    op.drop_table("mfa_recovery_codes")
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.drop_column("mfa_required_for_clinicians")
    with op.batch_alter_table("user_sessions", schema=None) as batch_op:
        batch_op.drop_column("mfa_enrolment_only")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("mfa_last_step")
        batch_op.drop_column("mfa_enabled_at")
        batch_op.drop_column("mfa_pending_secret_encrypted")
        batch_op.drop_column("mfa_secret_encrypted")
