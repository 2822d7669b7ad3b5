"""automatic logoff: idle tracking on sessions

Revision ID: 0011_idle_logoff
Revises: 0010_mfa
Create Date: 2026-12-05

Sessions end after a time without activity by their person (HIPAA automatic logoff), on top of their absolute
lifetime. The live idle clock is in Redis; `user_sessions` gains the idle timeout a session was opened with
(NULL for sessions opened before: the role's current setting applies), a coarse copy of its last activity, and
why it was revoked ("idle" when it timed out, so every tab can say so).

Migrations must not import application code (backend.*): the models change later, a migration never does.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0011_idle_logoff"
down_revision: str | Sequence[str] | None = "0010_mfa"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("user_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("revoked_reason", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("idle_timeout_seconds", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("user_sessions", schema=None) as batch_op:
        batch_op.drop_column("last_seen_at")
        batch_op.drop_column("idle_timeout_seconds")
        batch_op.drop_column("revoked_reason")
