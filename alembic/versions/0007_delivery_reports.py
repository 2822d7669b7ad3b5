"""delivery reports: what the provider later said about a message it accepted

Revision ID: 0007_delivery_reports
Revises: 0006_reminders
Create Date: 2026-11-21

Twilio's status callbacks and SendGrid's event webhook report on a message after it was handed over: delivered,
or undelivered, bounced, dropped. The latest report (never regressing) and its time are kept on the delivery
ledger and mirrored on the notification, which the admin outbox lists. Existing rows have no report ('').

Migrations must not import application code (backend.*): the models change later, a migration never does.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0007_delivery_reports"
down_revision: str | Sequence[str] | None = "0006_reminders"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("notifications", "notification_deliveries")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("provider_status", sa.String(length=30), nullable=False, server_default=""))
            batch_op.add_column(sa.Column("provider_status_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("provider_status_at")
            batch_op.drop_column("provider_status")
