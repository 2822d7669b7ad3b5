"""Fee policies, cards on file, the payments ledger and the patients' acceptances of a fee policy.

Money is an integer count of the currency's minor units (cents) with its ISO currency code: never a float. No card
number ever reaches these tables (or our servers): a card is the gateway's customer and payment-method ids plus
the brand and last four digits it reports.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field

from backend.tenancy.models import TenantMixin, default_and_override_indexes, tenant_fk, tenant_key
from backend.types import JSONType, UTCDateTime, new_id, utcnow


class PaymentKind(StrEnum):
    COPAY = "copay"
    SELF_PAY = "self_pay"
    LATE_CANCEL_FEE = "late_cancel_fee"
    NO_SHOW_FEE = "no_show_fee"


class PaymentStatus(StrEnum):
    """requested -> succeeded | failed (retried while the policy allows) -> refunded; waived by staff instead."""

    REQUESTED = "requested"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REFUNDED = "refunded"
    WAIVED = "waived"


class FeePolicy(TenantMixin, table=True):
    """A practice's fee policy (clinic_id None) or a clinic's override of it. Amounts in minor units."""

    __tablename__ = "fee_policies"
    __table_args__ = (
        *default_and_override_indexes("fee_policies"),
        tenant_key("fee_policies"),
        tenant_fk("fee_policies", "clinic_id", "clinics", ondelete="CASCADE"),
        sa.CheckConstraint(
            "self_pay_minor >= 0 AND copay_minor >= 0 AND late_cancel_fee_minor >= 0 AND no_show_fee_minor >= 0",
            name="amounts",
        ),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    clinic_id: uuid.UUID | None = Field(default=None)
    currency: str = Field(default="usd", max_length=3)
    # The self-pay price of a session; `provider_prices` ({provider id: minor units}) overrides it per provider.
    self_pay_minor: int = 0
    provider_prices: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)
    copay_enabled: bool = False
    copay_minor: int = 0
    # A patient's cancellation within this many minutes of the start costs late_cancel_fee_minor (0: no fee).
    late_cancel_window_minutes: int = 1440
    late_cancel_fee_minor: int = 0
    no_show_fee_minor: int = 0
    card_required: bool = False
    # How many times a declined charge is tried in all (at least once).
    max_charge_attempts: int = 3
    # What the patient reads and accepts; every change of the terms raises the version.
    policy_text: str = Field(default="", sa_type=sa.Text)
    version: int = 1
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class PaymentMethod(TenantMixin, table=True):
    """A patient's saved card: the gateway's ids, the brand and the last four digits. Never the number."""

    __tablename__ = "payment_methods"
    __table_args__ = (
        tenant_key("payment_methods"),
        tenant_fk("payment_methods", "patient_id", "patients", ondelete="CASCADE"),
        sa.UniqueConstraint("tenant_id", "provider_method_id", name="uq_payment_methods_provider_method"),
        sa.Index("ix_payment_methods_patient", "tenant_id", "patient_id"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    patient_id: uuid.UUID = Field()
    provider_customer_id: str = Field(max_length=120)
    provider_method_id: str = Field(max_length=120)
    brand: str = Field(default="", max_length=30)
    last4: str = Field(default="", max_length=4)
    exp_month: int = 0
    exp_year: int = 0
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    removed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Payment(TenantMixin, table=True):
    """The ledger: one row per fee or charge. The unique (tenant, appointment, kind) makes a second charge of the
    same fee impossible; the idempotency key (row id + attempt) makes a repeated request to the gateway one charge.

    A row 'requested' whose lease ran out belonged to a worker that died between request and result: the sweep
    asks again with the SAME key, and the gateway answers with the charge it already made."""

    __tablename__ = "payments"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "appointment_id", "kind", name="uq_payments_appointment_kind"),
        sa.UniqueConstraint("idempotency_key", name="uq_payments_idempotency_key"),
        sa.CheckConstraint("kind IN ('copay', 'self_pay', 'late_cancel_fee', 'no_show_fee')", name="kind"),
        sa.CheckConstraint("status IN ('requested', 'succeeded', 'failed', 'refunded', 'waived')", name="status"),
        sa.CheckConstraint("amount_minor > 0", name="amount"),
        sa.Index("ix_payments_due", "status", "next_attempt_at"),
        sa.Index("ix_payments_patient", "tenant_id", "patient_id", "created_at"),
        tenant_key("payments"),
        tenant_fk("payments", "patient_id", "patients", ondelete="CASCADE"),
        tenant_fk("payments", "appointment_id", "appointments"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    patient_id: uuid.UUID = Field()
    appointment_id: uuid.UUID | None = Field(default=None)
    kind: str = Field(max_length=20)
    status: str = Field(default=PaymentStatus.REQUESTED, max_length=20)
    amount_minor: int
    currency: str = Field(max_length=3)
    # "<payment id>:<attempt>": the same for every request of one attempt, new for a retry after a decline.
    idempotency_key: str = Field(max_length=100)
    attempt: int = 1
    provider_customer_id: str | None = Field(default=None, max_length=120)
    provider_method_id: str | None = Field(default=None, max_length=120)
    provider_payment_intent_id: str | None = Field(default=None, max_length=120, index=True)
    provider_charge_id: str | None = Field(default=None, max_length=120)
    # Never PHI or card data: the gateway's decline code or an error class, truncated.
    last_error: str = Field(default="", max_length=300)
    next_attempt_at: datetime | None = Field(default_factory=utcnow, sa_type=UTCDateTime)
    lease_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    waived_by: uuid.UUID | None = Field(default=None)
    waive_reason: str = Field(default="", max_length=300)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    settled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class PolicyAcceptance(TenantMixin, table=True):
    """A patient accepted one version of one fee policy, at a time."""

    __tablename__ = "fee_policy_acceptances"
    __table_args__ = (
        sa.UniqueConstraint(
            "tenant_id", "patient_id", "policy_id", "policy_version", name="uq_fee_policy_acceptances_version"
        ),
        tenant_fk("fee_policy_acceptances", "patient_id", "patients", ondelete="CASCADE"),
        tenant_fk("fee_policy_acceptances", "policy_id", "fee_policies", ondelete="CASCADE"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    patient_id: uuid.UUID = Field()
    policy_id: uuid.UUID = Field()
    policy_version: int
    accepted_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
