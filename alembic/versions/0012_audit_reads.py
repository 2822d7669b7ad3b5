"""audit of reads: batched access rows, hash chain, append-only

Revision ID: 0012_audit_reads
Revises: 0011_idle_logoff
Create Date: 2026-12-05

PLACEHOLDER: reserved so the chain is linear while this is built; filled in (or removed) before it lands.

Migrations must not import application code (backend.*): the models change later, a migration never does.
"""

from __future__ import annotations

from collections.abc import Sequence

# revision identifiers, used by Alembic.
revision: str = "0012_audit_reads"
down_revision: str | Sequence[str] | None = "0011_idle_logoff"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
