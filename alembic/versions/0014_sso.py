"""single sign-on for staff (OpenID Connect) per practice

Revision ID: 0014_sso
Revises: 0013_encrypt_free_text
Create Date: 2026-12-05

`practice_sso` holds a practice's OpenID Connect identity provider: issuer, client id, the client secret
(encrypted by the application, a Fernet token), whether staff sign-in through it is on, and whether the practice
trusts the provider's MFA. At most one row per practice.

Migrations must not import application code (backend.*): the models change later, a migration never does.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0014_sso"
down_revision: str | Sequence[str] | None = "0013_encrypt_free_text"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ_DATETIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "practice_sso",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("issuer", sa.String(length=500), nullable=False),
        sa.Column("client_id", sa.String(length=255), nullable=False),
        sa.Column("client_secret_encrypted", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("trust_idp_mfa", sa.Boolean(), nullable=False),
        sa.Column("created_at", TZ_DATETIME, nullable=False),
        sa.Column("updated_at", TZ_DATETIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_practice_sso_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_practice_sso")),
        sa.UniqueConstraint("tenant_id", name=op.f("uq_practice_sso_tenant_id")),
    )
    op.create_index(op.f("ix_practice_sso_tenant_id"), "practice_sso", ["tenant_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_practice_sso_tenant_id"), table_name="practice_sso")
    op.drop_table("practice_sso")
