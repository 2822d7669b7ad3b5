"""Waitlist entries, the offers made to them, and the policy that governs both."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field

from backend.tenancy.models import TenantMixin
from backend.types import JSONType, UTCDateTime, new_id, utcnow


class EntryStatus(StrEnum):
    WAITING = "waiting"
    OFFERED = "offered"
    BOOKED = "booked"
    EXPIRED = "expired"
    CANCELLED = "cancelled"  # the patient left
    REMOVED = "removed"  # staff removed it


ACTIVE_ENTRY_STATUSES = (EntryStatus.WAITING, EntryStatus.OFFERED)


class OfferStatus(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    EXPIRED = "expired"
    WITHDRAWN = "withdrawn"


class WaitlistEntry(TenantMixin, table=True):
    __tablename__ = "waitlist_entries"
    __table_args__ = (
        sa.Index("ix_waitlist_entries_target", "tenant_id", "clinic_id", "provider_id", "status"),
        sa.CheckConstraint("urgency BETWEEN 1 AND 4", name="urgency"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    patient_id: uuid.UUID = Field(foreign_key="patients.id", index=True)
    clinic_id: uuid.UUID = Field(foreign_key="clinics.id")
    # None: any provider of the clinic (optionally narrowed by specialty and modality).
    provider_id: uuid.UUID | None = Field(default=None, foreign_key="providers.id")
    specialty: str | None = Field(default=None, max_length=80)
    modality: str | None = Field(default=None, max_length=20)
    # [{"weekday": 0-6, "start": "HH:MM", "end": "HH:MM"}] in `timezone` (the clinic's IANA zone).
    preferred_windows: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSONType)
    timezone: str = Field(max_length=64)
    earliest_date: date | None = None
    latest_date: date | None = None
    urgency: int = Field(default=2, description="1 routine ... 4 urgent")
    reason: str = Field(default="", max_length=500)
    status: EntryStatus = Field(default=EntryStatus.WAITING, sa_type=sa.String(20))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_confirmed_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class WaitlistOffer(TenantMixin, table=True):
    __tablename__ = "waitlist_offers"
    __table_args__ = (sa.Index("ix_waitlist_offers_due", "status", "expires_at"),)

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    entry_id: uuid.UUID = Field(foreign_key="waitlist_entries.id", index=True)
    # The held appointment row that reserves the slot while the offer is live.
    appointment_id: uuid.UUID | None = Field(default=None, foreign_key="appointments.id", index=True)
    provider_id: uuid.UUID = Field(foreign_key="providers.id")
    clinic_id: uuid.UUID = Field(foreign_key="clinics.id")
    slot_start: datetime = Field(sa_type=UTCDateTime)
    slot_end: datetime = Field(sa_type=UTCDateTime)
    status: OfferStatus = Field(default=OfferStatus.PENDING, sa_type=sa.String(20))
    expires_at: datetime = Field(sa_type=UTCDateTime)
    responded_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class WaitlistPolicy(TenantMixin, table=True):
    """The practice default (clinic_id is None) or a clinic's override."""

    __tablename__ = "waitlist_policies"
    __table_args__ = (
        sa.Index(
            "uq_waitlist_policies_default",
            "tenant_id",
            unique=True,
            postgresql_where=sa.text("clinic_id IS NULL"),
            sqlite_where=sa.text("clinic_id IS NULL"),
        ),
        sa.Index(
            "uq_waitlist_policies_clinic",
            "tenant_id",
            "clinic_id",
            unique=True,
            postgresql_where=sa.text("clinic_id IS NOT NULL"),
            sqlite_where=sa.text("clinic_id IS NOT NULL"),
        ),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    clinic_id: uuid.UUID | None = Field(default=None, foreign_key="clinics.id")
    max_active_per_provider: int = 50
    max_active_per_clinic: int = 200
    max_entries_per_patient: int = 3
    entry_ttl_days: int = 90
    reconfirm_interval_days: int = 30
    offer_hold_minutes: int = 30
    offers_per_batch: int = 1
    cutoff_minutes_before_slot: int = 120
    quiet_hours_start: time | None = Field(default=time(21, 0))
    quiet_hours_end: time | None = Field(default=time(8, 0))
    urgency_weight: float = 10.0
    wait_weight: float = 1.0
    fit_weight: float = 5.0
    continuity_weight: float = 3.0
    auto_offer: bool = True
    expire_entry_on_decline: bool = False
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
