"""notifications: the delivery ledger

Revision ID: 0005_notifications
Revises: 0004_waitlist
Create Date: 2026-11-28

One ledger row per notification (a notification is one channel already): pending -> sending -> sent | failed
| dead | unknown, with an attempt counter, the provider's message id and the next attempt time. The unique
notification id makes a redelivered task find the row it already sent.

Migrations must not import application code (backend.*): the models change later, a migration never does.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0005_notifications'
down_revision: str | Sequence[str] | None = '0004_waitlist'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ_DATETIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "notification_deliveries",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("notification_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("provider_message_id", sa.String(length=120), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=False),
        sa.Column("next_attempt_at", TZ_DATETIME, nullable=False),
        sa.Column("created_at", TZ_DATETIME, nullable=False),
        sa.Column("updated_at", TZ_DATETIME, nullable=False),
        sa.Column("sent_at", TZ_DATETIME, nullable=True),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notifications.id"],
            name=op.f("fk_notification_deliveries_notification_id_notifications"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_notification_deliveries_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_deliveries")),
        sa.UniqueConstraint("notification_id", name=op.f("uq_notification_deliveries_notification_id")),
    )
    op.create_index(
        "ix_notification_deliveries_due", "notification_deliveries", ["status", "next_attempt_at"], unique=False
    )
    op.create_index(
        op.f("ix_notification_deliveries_tenant_id"), "notification_deliveries", ["tenant_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_notification_deliveries_tenant_id"), table_name="notification_deliveries")
    op.drop_index("ix_notification_deliveries_due", table_name="notification_deliveries")
    op.drop_table("notification_deliveries")
