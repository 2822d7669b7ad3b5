"""Weekly availability, time off and appointments."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Field

from backend.crypto import EncryptedText
from backend.tenancy.models import TenantMixin, default_and_override_indexes, tenant_fk, tenant_key
from backend.types import UTCDateTime, new_id, utcnow


class AppointmentStatus(StrEnum):
    HELD = "held"  # a slot held while a patient confirms or answers an offer
    BOOKED = "booked"
    CANCELLED = "cancelled"
    LATE_CANCELLED = "late_cancelled"
    COMPLETED = "completed"
    NO_SHOW = "no_show"


# Statuses that occupy the provider's time.
ACTIVE_APPOINTMENT_STATUSES = (AppointmentStatus.HELD, AppointmentStatus.BOOKED)


class AvailabilityRule(TenantMixin, table=True):
    """A weekly block of bookable time, in the clinic's local wall-clock time."""

    __tablename__ = "availability_rules"
    __table_args__ = (
        sa.CheckConstraint("weekday BETWEEN 0 AND 6", name="weekday"),
        sa.CheckConstraint("start_time < end_time", name="order"),
        sa.CheckConstraint("session_minutes > 0", name="session"),
        sa.CheckConstraint("buffer_minutes >= 0", name="buffer"),
        tenant_fk("availability_rules", "provider_id", "providers", ondelete="CASCADE"),
        tenant_fk("availability_rules", "clinic_id", "clinics"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    provider_id: uuid.UUID = Field(index=True)
    clinic_id: uuid.UUID = Field(index=True)
    weekday: int = Field(description="0 = Monday ... 6 = Sunday")
    start_time: time
    end_time: time
    session_minutes: int = Field(default=50)
    buffer_minutes: int = Field(default=10)
    modality: str = Field(default="in_person", max_length=20)
    valid_from: date | None = None
    valid_until: date | None = None


class TimeOff(TenantMixin, table=True):
    __tablename__ = "time_off"
    __table_args__ = (
        sa.CheckConstraint("start_at < end_at", name="order"),
        tenant_fk("time_off", "provider_id", "providers", ondelete="CASCADE"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    provider_id: uuid.UUID = Field(index=True)
    start_at: datetime = Field(sa_type=UTCDateTime)
    end_at: datetime = Field(sa_type=UTCDateTime)
    # The provider's own words (may be medical leave): encrypted at rest; 200 characters is the plaintext's limit.
    reason: str = Field(default="", max_length=200, sa_type=EncryptedText)


class Appointment(TenantMixin, table=True):
    __tablename__ = "appointments"
    __table_args__ = (
        sa.CheckConstraint("start_at < end_at", name="order"),
        sa.Index("ix_appointments_provider_start", "tenant_id", "provider_id", "start_at"),
        sa.Index("ix_appointments_patient_start", "tenant_id", "patient_id", "start_at"),
        # Only held rows, by practice and expiry: releasing expired holds reads those, never the practice's whole
        # calendar (0021; the planner takes it without statistics too: tests/integration/test_query_plans.py).
        sa.Index(
            "ix_appointments_held_expiry",
            "tenant_id",
            "hold_expires_at",
            postgresql_where=sa.text("status = 'held'"),
            sqlite_where=sa.text("status = 'held'"),
        ),
        # A retried request with the same Idempotency-Key books once (per tenant, not per slot).
        sa.UniqueConstraint("tenant_id", "idempotency_key", name="uq_appointments_idempotency"),
        tenant_key("appointments"),
        tenant_fk("appointments", "provider_id", "providers"),
        tenant_fk("appointments", "patient_id", "patients"),
        tenant_fk("appointments", "clinic_id", "clinics"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    provider_id: uuid.UUID = Field()
    patient_id: uuid.UUID | None = Field(default=None)
    clinic_id: uuid.UUID = Field(index=True)
    start_at: datetime = Field(sa_type=UTCDateTime)
    end_at: datetime = Field(sa_type=UTCDateTime)
    modality: str = Field(default="in_person", max_length=20)
    status: AppointmentStatus = Field(default=AppointmentStatus.BOOKED, sa_type=sa.String(20), index=True)
    hold_expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    version: int = Field(default=1)
    series_id: uuid.UUID | None = Field(default=None, index=True)
    idempotency_key: str | None = Field(default=None, max_length=100)
    # A digest of the request that used the key: the same key with other parameters is refused.
    idempotency_fingerprint: str | None = Field(default=None, max_length=64)
    booked_by_user_id: uuid.UUID | None = Field(default=None)
    # Free text that can carry clinical detail: encrypted at rest (backend/crypto); 500 is the plaintext's limit.
    cancel_reason: str = Field(default="", max_length=500, sa_type=EncryptedText)
    cancelled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class BookingPolicy(TenantMixin, table=True):
    """Booking rules: the practice default (clinic_id is None) or a clinic's override."""

    __tablename__ = "booking_policies"
    __table_args__ = (
        *default_and_override_indexes("booking_policies"),
        tenant_fk("booking_policies", "clinic_id", "clinics"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    clinic_id: uuid.UUID | None = Field(default=None)
    min_notice_minutes: int = 60
    horizon_days: int = 90
    # Inside this many hours before the start a patient's cancellation is recorded as late.
    cancellation_window_hours: int = 24
    # How long a slot stays held while a patient confirms.
    hold_minutes: int = 10
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ProviderNextFree(TenantMixin, table=True):
    """A provider's earliest free slot (none: nothing free within the horizon), as last computed: what a search
    with an empty cache reads (backend/scheduling/next_free.py keeps it)."""

    __tablename__ = "provider_next_free"
    # No index on what changes (version, the answer): every update stays a HOT update, in the page's own free
    # space (fillfactor 50, migration 0022), with no index entry to add; a booking's mark is one of them.
    __table_args__ = (tenant_fk("provider_next_free", "provider_id", "providers", ondelete="CASCADE"),)

    provider_id: uuid.UUID = Field(primary_key=True)
    # Raised after every committed change that may move the slot; computed_version: the one the answer reflects.
    version: int = Field(default=0, sa_type=sa.BigInteger)
    computed_version: int | None = Field(default=None, sa_type=sa.BigInteger)
    # No foreign key: a hint, and deleting a clinic must not wait for it (the deletion marks its providers).
    clinic_id: uuid.UUID | None = None
    slot_start: datetime | None = Field(default=None, sa_type=UTCDateTime)
    slot_end: datetime | None = Field(default=None, sa_type=UTCDateTime)
    modality: str | None = Field(default=None, max_length=20)
    timezone: str | None = Field(default=None, max_length=64)
    computed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    fresh_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
