"""reminders: the once-only guard of appointment reminders, and each practice's reminder offsets

Revision ID: 0006_reminders
Revises: 0005_notifications
Create Date: 2026-11-21

`appointment_reminders` holds one row per (appointment, offset) that is done, sent or skipped; its unique pair
makes a second sweep (or a concurrent one) insert nothing and so send nothing. `notification_settings` holds a
practice's reminder offsets and its quiet-hours rule (one row per tenant at most; without a row the defaults
apply).

Migrations must not import application code (backend.*): the models change later, a migration never does.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "0006_reminders"
down_revision: str | Sequence[str] | None = "0005_notifications"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ_DATETIME = sa.DateTime(timezone=True)
# JSONB on PostgreSQL, plain JSON elsewhere (backend.types.JSONType as of this revision).
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "appointment_reminders",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("appointment_id", sa.Uuid(), nullable=False),
        sa.Column("offset_minutes", sa.Integer(), nullable=False),
        sa.Column("created_at", TZ_DATETIME, nullable=False),
        sa.CheckConstraint("offset_minutes > 0", name=op.f("ck_appointment_reminders_offset")),
        sa.ForeignKeyConstraint(
            ["appointment_id"],
            ["appointments.id"],
            name=op.f("fk_appointment_reminders_appointment_id_appointments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_appointment_reminders_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_appointment_reminders")),
        sa.UniqueConstraint(
            "appointment_id", "offset_minutes", name=op.f("uq_appointment_reminders_appointment_id_offset_minutes")
        ),
    )
    op.create_index(op.f("ix_appointment_reminders_tenant_id"), "appointment_reminders", ["tenant_id"], unique=False)

    op.create_table(
        "notification_settings",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("reminder_offsets_minutes", JSON, nullable=False),
        sa.Column("quiet_hours_email_now", sa.Boolean(), nullable=False),
        sa.Column("updated_at", TZ_DATETIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_notification_settings_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_settings")),
        sa.UniqueConstraint("tenant_id", name=op.f("uq_notification_settings_tenant_id")),
    )
    op.create_index(op.f("ix_notification_settings_tenant_id"), "notification_settings", ["tenant_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_notification_settings_tenant_id"), table_name="notification_settings")
    op.drop_table("notification_settings")
    op.drop_index(op.f("ix_appointment_reminders_tenant_id"), table_name="appointment_reminders")
    op.drop_table("appointment_reminders")
