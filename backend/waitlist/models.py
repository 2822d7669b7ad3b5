"""Waitlist entries, the offers made to them, and the policy that governs both."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field

from backend.crypto import EncryptedText
from backend.tenancy.models import TenantMixin, default_and_override_indexes, partial_unique, tenant_fk, tenant_key
from backend.types import JSONType, UTCDateTime, new_id, utcnow


class EntryStatus(StrEnum):
    WAITING = "waiting"
    OFFERED = "offered"
    BOOKED = "booked"
    EXPIRED = "expired"
    CANCELLED = "cancelled"  # the patient left
    REMOVED = "removed"  # staff removed it


ACTIVE_ENTRY_STATUSES = (EntryStatus.WAITING, EntryStatus.OFFERED)


def target_key(
    clinic_id: uuid.UUID, provider_id: uuid.UUID | None, specialty: str | None, modality: str | None
) -> str:
    """What an entry waits for, as one comparable string (one active entry per patient and target)."""
    return (
        f"clinic:{clinic_id}|provider:{provider_id or 'any'}"
        f"|specialty:{(specialty or '').strip().lower() or 'any'}|modality:{modality or 'any'}"
    )


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
        sa.Index("ix_waitlist_entries_tenant_patient", "tenant_id", "patient_id"),  # a patient's entries (0021)
        sa.CheckConstraint("urgency BETWEEN 1 AND 4", name="urgency"),
        # One active entry per patient and target: a second join answers 409.
        partial_unique(
            "uq_waitlist_entries_active_target",
            "tenant_id",
            "patient_id",
            "target_key",
            where="status IN ('waiting', 'offered')",
        ),
        tenant_key("waitlist_entries"),
        tenant_fk("waitlist_entries", "patient_id", "patients"),
        tenant_fk("waitlist_entries", "clinic_id", "clinics"),
        tenant_fk("waitlist_entries", "provider_id", "providers"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    patient_id: uuid.UUID = Field(index=True)
    clinic_id: uuid.UUID = Field()
    # None: any provider of the clinic (optionally narrowed by specialty and modality).
    provider_id: uuid.UUID | None = Field(default=None)
    specialty: str | None = Field(default=None, max_length=80)
    modality: str | None = Field(default=None, max_length=20)
    # [{"weekday": 0-6, "start": "HH:MM", "end": "HH:MM"}] in `timezone` (the clinic's IANA zone).
    preferred_windows: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSONType)
    timezone: str = Field(max_length=64)
    earliest_date: date | None = None
    latest_date: date | None = None
    urgency: int = Field(default=2, description="1 routine ... 4 urgent")
    # The patient's note to the care team: encrypted at rest (backend/crypto); 500 is the plaintext's limit.
    reason: str = Field(default="", max_length=500, sa_type=EncryptedText)
    status: EntryStatus = Field(default=EntryStatus.WAITING, sa_type=sa.String(20))
    # "clinic:<id>|provider:<id or any>|specialty:<x>|modality:<x>": what the patient waits for.
    target_key: str = Field(default="", max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_confirmed_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # When the practice last asked "still interested?" (None: not asked since the last confirmation).
    reconfirm_requested_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    version: int = Field(default=1)


class WaitlistOffer(TenantMixin, table=True):
    __tablename__ = "waitlist_offers"
    __table_args__ = (
        sa.Index("ix_waitlist_offers_due", "status", "expires_at"),
        sa.Index("ix_waitlist_offers_tenant_entry", "tenant_id", "entry_id"),  # an entry's offers (0021)
        # Invariant 3: a slot has at most one live offer at a time.
        partial_unique(
            "uq_waitlist_offers_live_slot", "tenant_id", "provider_id", "slot_start", where="status = 'pending'"
        ),
        tenant_fk("waitlist_offers", "entry_id", "waitlist_entries"),
        tenant_fk("waitlist_offers", "appointment_id", "appointments"),
        tenant_fk("waitlist_offers", "provider_id", "providers"),
        tenant_fk("waitlist_offers", "clinic_id", "clinics"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    entry_id: uuid.UUID = Field(index=True)
    # The held appointment row that reserves the slot while the offer is live.
    appointment_id: uuid.UUID | None = Field(default=None, index=True)
    provider_id: uuid.UUID = Field()
    clinic_id: uuid.UUID = Field()
    slot_start: datetime = Field(sa_type=UTCDateTime)
    slot_end: datetime = Field(sa_type=UTCDateTime)
    status: OfferStatus = Field(default=OfferStatus.PENDING, sa_type=sa.String(20))
    # auto (a slot freed up), promote (doctor: best free slot now), invite (doctor: a chosen slot)
    kind: str = Field(default="auto", max_length=20)
    offered_by_user_id: uuid.UUID | None = Field(default=None)
    score: float = Field(default=0.0)
    # The ranking breakdown at the time of the offer ("why this patient").
    reasons: list[str] = Field(default_factory=list, sa_type=JSONType)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    responded_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class WaitlistPolicy(TenantMixin, table=True):
    """The practice default (clinic_id is None) or a clinic's override."""

    __tablename__ = "waitlist_policies"
    __table_args__ = (
        *default_and_override_indexes("waitlist_policies"),
        tenant_fk("waitlist_policies", "clinic_id", "clinics"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    clinic_id: uuid.UUID | None = Field(default=None)
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


@sa.event.listens_for(WaitlistEntry, "before_insert")
@sa.event.listens_for(WaitlistEntry, "before_update")
def _keep_target_key(_mapper: object, _connection: object, entry: WaitlistEntry) -> None:
    """The target key always follows the entry's target, whoever writes the row."""
    entry.target_key = target_key(entry.clinic_id, entry.provider_id, entry.specialty, entry.modality)
