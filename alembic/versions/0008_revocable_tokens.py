"""revocable tokens: API sessions with rotating refresh tokens; login throttling moves to Redis

Revision ID: 0008_revocable_tokens
Revises: 0007_delivery_reports
Create Date: 2026-11-28

Bearer tokens are bound to a session row (`sid` claim) so that sign-out, a disabled user or a password change
revokes them. `user_sessions` gains its kind ('browser' for cookie sessions, which every existing row is, or
'api'), the hash of the API session's current refresh token and its rotation generation (to detect reuse).

The per-user failure counter (users.failed_login_count, last_failed_login_at) let anyone lock an account out;
throttling now lives in Redis keyed by client network and account, so the columns go. The downgrade brings them
back empty (0 failures).

Migrations must not import application code (backend.*): the models change later, a migration never does.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0008_revocable_tokens"
down_revision: str | Sequence[str] | None = "0007_delivery_reports"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("user_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kind", sa.String(length=10), nullable=False, server_default="browser"))
        batch_op.add_column(sa.Column("refresh_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("refresh_generation", sa.Integer(), nullable=False, server_default="0"))
        batch_op.create_check_constraint(op.f("ck_user_sessions_kind"), "kind IN ('browser', 'api')")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("last_failed_login_at")
        batch_op.drop_column("failed_login_count")


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("failed_login_count", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("last_failed_login_at", sa.DateTime(timezone=True), nullable=True))
    # API sessions have no meaning before this revision: their tokens carry a claim nothing checks.
    op.execute("DELETE FROM user_sessions WHERE kind = 'api'")
    with op.batch_alter_table("user_sessions", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_user_sessions_kind"), type_="check")
        batch_op.drop_column("refresh_generation")
        batch_op.drop_column("refresh_hash")
        batch_op.drop_column("kind")
