"""payments: fee policies (practice default, clinic override), cards on file, the payments ledger, acceptances

Revision ID: 0020_payments
Revises: 0019_self_registration
Create Date: 2026-12-05

`fee_policies`: a practice's fee policy (clinic_id NULL) and at most one override per clinic: the self-pay price
(per provider in `provider_prices`), copay on/off and amount, the late-cancellation window and fee, the no-show fee,
whether a card on file is required to book, how often a declined charge is tried, and the policy text with its
version. `payment_methods`: a patient's saved cards as the gateway's ids, brand and last four digits (never a card
number). `payments`: the ledger, amounts in integer minor units with a currency; UNIQUE (tenant_id,
appointment_id, kind) so a fee cannot be charged twice, a unique idempotency key per attempt. `fee_policy_acceptances`:
which patient accepted which version of which policy, when. On PostgreSQL every table is under row-level security
with the same policy as every other tenant table (0015).

Migrations must not import application code (backend.*): the models change later, a migration never does.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "0020_payments"
down_revision: str | Sequence[str] | None = "0019_self_registration"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ_DATETIME = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
CURRENT_TENANT = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"
POLICY = "tenant_isolation"
TABLES = ("fee_policies", "fee_policy_acceptances", "payment_methods", "payments")


def upgrade() -> None:
    op.create_table(
        "fee_policies",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("clinic_id", sa.Uuid(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("self_pay_minor", sa.Integer(), nullable=False),
        sa.Column("provider_prices", JSON, nullable=False),
        sa.Column("copay_enabled", sa.Boolean(), nullable=False),
        sa.Column("copay_minor", sa.Integer(), nullable=False),
        sa.Column("late_cancel_window_minutes", sa.Integer(), nullable=False),
        sa.Column("late_cancel_fee_minor", sa.Integer(), nullable=False),
        sa.Column("no_show_fee_minor", sa.Integer(), nullable=False),
        sa.Column("card_required", sa.Boolean(), nullable=False),
        sa.Column("max_charge_attempts", sa.Integer(), nullable=False),
        sa.Column("policy_text", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", TZ_DATETIME, nullable=False),
        sa.CheckConstraint(
            "self_pay_minor >= 0 AND copay_minor >= 0 AND late_cancel_fee_minor >= 0 AND no_show_fee_minor >= 0",
            name=op.f("ck_fee_policies_amounts"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "clinic_id"],
            ["clinics.tenant_id", "clinics.id"],
            name="fk_fee_policies_clinic_id_clinics",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_fee_policies_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fee_policies")),
        sa.UniqueConstraint("tenant_id", "id", name="uq_fee_policies_tenant_id_id"),
    )
    with op.batch_alter_table("fee_policies", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fee_policies_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index(
            "uq_fee_policies_clinic",
            ["tenant_id", "clinic_id"],
            unique=True,
            postgresql_where=sa.text("clinic_id IS NOT NULL"),
            sqlite_where=sa.text("clinic_id IS NOT NULL"),
        )
        batch_op.create_index(
            "uq_fee_policies_default",
            ["tenant_id"],
            unique=True,
            postgresql_where=sa.text("clinic_id IS NULL"),
            sqlite_where=sa.text("clinic_id IS NULL"),
        )

    op.create_table(
        "fee_policy_acceptances",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("policy_id", sa.Uuid(), nullable=False),
        sa.Column("policy_version", sa.Integer(), nullable=False),
        sa.Column("accepted_at", TZ_DATETIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "patient_id"],
            ["patients.tenant_id", "patients.id"],
            name="fk_fee_policy_acceptances_patient_id_patients",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "policy_id"],
            ["fee_policies.tenant_id", "fee_policies.id"],
            name="fk_fee_policy_acceptances_policy_id_fee_policies",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_fee_policy_acceptances_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fee_policy_acceptances")),
        sa.UniqueConstraint(
            "tenant_id", "patient_id", "policy_id", "policy_version", name="uq_fee_policy_acceptances_version"
        ),
    )
    with op.batch_alter_table("fee_policy_acceptances", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fee_policy_acceptances_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "payment_methods",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("provider_customer_id", sa.String(length=120), nullable=False),
        sa.Column("provider_method_id", sa.String(length=120), nullable=False),
        sa.Column("brand", sa.String(length=30), nullable=False),
        sa.Column("last4", sa.String(length=4), nullable=False),
        sa.Column("exp_month", sa.Integer(), nullable=False),
        sa.Column("exp_year", sa.Integer(), nullable=False),
        sa.Column("created_at", TZ_DATETIME, nullable=False),
        sa.Column("removed_at", TZ_DATETIME, nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id", "patient_id"],
            ["patients.tenant_id", "patients.id"],
            name="fk_payment_methods_patient_id_patients",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_payment_methods_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_methods")),
        sa.UniqueConstraint("tenant_id", "id", name="uq_payment_methods_tenant_id_id"),
        sa.UniqueConstraint("tenant_id", "provider_method_id", name="uq_payment_methods_provider_method"),
    )
    with op.batch_alter_table("payment_methods", schema=None) as batch_op:
        batch_op.create_index("ix_payment_methods_patient", ["tenant_id", "patient_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_payment_methods_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "payments",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("appointment_id", sa.Uuid(), nullable=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("amount_minor", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("idempotency_key", sa.String(length=100), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("provider_customer_id", sa.String(length=120), nullable=True),
        sa.Column("provider_method_id", sa.String(length=120), nullable=True),
        sa.Column("provider_payment_intent_id", sa.String(length=120), nullable=True),
        sa.Column("provider_charge_id", sa.String(length=120), nullable=True),
        sa.Column("last_error", sa.String(length=300), nullable=False),
        sa.Column("next_attempt_at", TZ_DATETIME, nullable=True),
        sa.Column("lease_until", TZ_DATETIME, nullable=True),
        sa.Column("waived_by", sa.Uuid(), nullable=True),
        sa.Column("waive_reason", sa.String(length=300), nullable=False),
        sa.Column("created_at", TZ_DATETIME, nullable=False),
        sa.Column("updated_at", TZ_DATETIME, nullable=False),
        sa.Column("settled_at", TZ_DATETIME, nullable=True),
        sa.CheckConstraint(
            "kind IN ('copay', 'self_pay', 'late_cancel_fee', 'no_show_fee')", name=op.f("ck_payments_kind")
        ),
        sa.CheckConstraint(
            "status IN ('requested', 'succeeded', 'failed', 'refunded', 'waived')", name=op.f("ck_payments_status")
        ),
        sa.CheckConstraint("amount_minor > 0", name=op.f("ck_payments_amount")),
        sa.ForeignKeyConstraint(
            ["tenant_id", "appointment_id"],
            ["appointments.tenant_id", "appointments.id"],
            name="fk_payments_appointment_id_appointments",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "patient_id"],
            ["patients.tenant_id", "patients.id"],
            name="fk_payments_patient_id_patients",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_payments_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments")),
        sa.UniqueConstraint("idempotency_key", name="uq_payments_idempotency_key"),
        sa.UniqueConstraint("tenant_id", "appointment_id", "kind", name="uq_payments_appointment_kind"),
        sa.UniqueConstraint("tenant_id", "id", name="uq_payments_tenant_id_id"),
    )
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.create_index("ix_payments_due", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index("ix_payments_patient", ["tenant_id", "patient_id", "created_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_payments_provider_payment_intent_id"), ["provider_payment_intent_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_payments_tenant_id"), ["tenant_id"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f'ALTER TABLE "{table}" ENABLE ROW LEVEL SECURITY')
            op.execute(f'ALTER TABLE "{table}" FORCE ROW LEVEL SECURITY')
            op.execute(
                f'CREATE POLICY {POLICY} ON "{table}"'
                f" USING (tenant_id = {CURRENT_TENANT}) WITH CHECK (tenant_id = {CURRENT_TENANT})"
            )


def downgrade() -> None:
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payments_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_payments_provider_payment_intent_id"))
        batch_op.drop_index("ix_payments_patient")
        batch_op.drop_index("ix_payments_due")

    op.drop_table("payments")
    with op.batch_alter_table("payment_methods", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payment_methods_tenant_id"))
        batch_op.drop_index("ix_payment_methods_patient")

    op.drop_table("payment_methods")
    with op.batch_alter_table("fee_policy_acceptances", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fee_policy_acceptances_tenant_id"))

    op.drop_table("fee_policy_acceptances")
    with op.batch_alter_table("fee_policies", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_fee_policies_default",
            postgresql_where=sa.text("clinic_id IS NULL"),
            sqlite_where=sa.text("clinic_id IS NULL"),
        )
        batch_op.drop_index(
            "uq_fee_policies_clinic",
            postgresql_where=sa.text("clinic_id IS NOT NULL"),
            sqlite_where=sa.text("clinic_id IS NOT NULL"),
        )
        batch_op.drop_index(batch_op.f("ix_fee_policies_tenant_id"))

    op.drop_table("fee_policies")  # the policies go with the tables
