"""MFA: TOTP secrets (encrypted), recovery codes, used-code replay guard

Revision ID: 0010_mfa
Revises: 0009_delivery_fencing
Create Date: 2026-12-05

PLACEHOLDER: reserved so the chain is linear while this is built; filled in (or removed) before it lands.

Migrations must not import application code (backend.*): the models change later, a migration never does.
"""

from __future__ import annotations

from collections.abc import Sequence

# revision identifiers, used by Alembic.
revision: str = "0010_mfa"
down_revision: str | Sequence[str] | None = "0009_delivery_fencing"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
