"""Per-patient channel preferences and the notification outbox."""

from __future__ import annotations

import uuid
from datetime import datetime, time
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field

from backend.tenancy.models import TenantMixin, tenant_fk, tenant_key
from backend.types import JSONType, UTCDateTime, new_id, utcnow


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    WHATSAPP = "whatsapp"
    CONSOLE = "console"


class NotificationStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    DEAD = "dead"
    UNKNOWN = "unknown"


class NotificationPreference(TenantMixin, table=True):
    __tablename__ = "notification_preferences"
    __table_args__ = (tenant_fk("notification_preferences", "patient_id", "patients", ondelete="CASCADE"),)

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    patient_id: uuid.UUID = Field(unique=True)
    email_opt_in: bool = True
    sms_opt_in: bool = False
    whatsapp_opt_in: bool = False
    quiet_hours_start: time | None = None
    quiet_hours_end: time | None = None
    unsubscribed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Notification(TenantMixin, table=True):
    """An outbox row, written in the same transaction as the change that causes it."""

    __tablename__ = "notifications"
    __table_args__ = (
        sa.Index("ix_notifications_due", "status", "next_attempt_at"),
        sa.Index("ix_notifications_patient", "tenant_id", "patient_id", "created_at"),
        tenant_key("notifications"),
        tenant_fk("notifications", "patient_id", "patients"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    # The patient it concerns; None for an account message to a staff member (an invitation or a password reset,
    # backend/identity/onboarding.py), whose payload names the link and the user.
    patient_id: uuid.UUID | None = Field(default=None)
    event_type: str = Field(max_length=60)
    channel: Channel = Field(sa_type=sa.String(20))
    # Ids only; templates look the rest up at send time.
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)
    status: NotificationStatus = Field(default=NotificationStatus.PENDING, sa_type=sa.String(20))
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    provider_message_id: str | None = Field(default=None, max_length=120)
    last_error: str = Field(default="", max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # The provider's latest report on a message it accepted ("delivered", "undelivered", "bounce", ...; '' for
    # none yet), from Twilio's status callback or SendGrid's event webhook, and when it came.
    provider_status: str = Field(default="", max_length=30)
    provider_status_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class NotificationDelivery(TenantMixin, table=True):
    """The delivery ledger: one row per notification (a notification is one channel already).

    pending -> sending -> sent | failed (retried when due) | dead | unknown (reconciled before any resend).
    A row left 'sending' past its lease belonged to a worker that died; it is reconciled through the channel's
    message lookup before it is ever sent again."""

    __tablename__ = "notification_deliveries"
    __table_args__ = (
        sa.Index("ix_notification_deliveries_due", "status", "next_attempt_at"),
        tenant_fk("notification_deliveries", "notification_id", "notifications", ondelete="CASCADE"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    notification_id: uuid.UUID = Field(unique=True)
    status: NotificationStatus = Field(default=NotificationStatus.PENDING, sa_type=sa.String(20))
    attempts: int = 0
    provider_message_id: str | None = Field(default=None, max_length=120)
    # Never PHI: an error class and the provider's code or message, truncated.
    last_error: str = Field(default="", max_length=500)
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # The provider's latest report on a message it accepted ("delivered", "undelivered", "bounce", ...; '' for
    # none yet), from Twilio's status callback or SendGrid's event webhook, and when it came.
    provider_status: str = Field(default="", max_length=30)
    provider_status_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # The fencing token of the current claim: incremented by every claim, so a claimer whose lease ran out (and
    # whose row was claimed again) finds its generation gone before it sends and when it finishes. claimed_by
    # names the claiming worker (host:pid), for the admin and the logs.
    claim_generation: int = Field(default=0)
    claimed_by: str | None = Field(default=None, max_length=120)


class AppointmentReminder(TenantMixin, table=True):
    """One reminder offset done for one appointment (sent, or skipped as stale): the unique pair is the guard
    that sends each reminder at most once, however many sweeps run. A rescheduled appointment is a new row
    (new id), so its reminders start afresh; the old, cancelled one gets no more."""

    __tablename__ = "appointment_reminders"
    __table_args__ = (
        sa.UniqueConstraint("appointment_id", "offset_minutes"),
        sa.CheckConstraint("offset_minutes > 0", name="offset"),
        tenant_fk("appointment_reminders", "appointment_id", "appointments", ondelete="CASCADE"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    appointment_id: uuid.UUID = Field()
    offset_minutes: int
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class NotificationSettings(TenantMixin, table=True):
    """A practice's notification settings; without a row the defaults from settings apply."""

    __tablename__ = "notification_settings"
    __table_args__ = (sa.UniqueConstraint("tenant_id"),)

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    # Minutes before the start, largest first, e.g. [2880, 120] (48 h and 2 h); empty: no reminders.
    reminder_offsets_minutes: list[int] = Field(default_factory=list, sa_type=JSONType)
    # In a patient's quiet hours offers and reminders wait; with this on, e-mail (silent) still goes at once
    # and only texts (SMS, WhatsApp) wait. Off: every channel waits.
    quiet_hours_email_now: bool = True
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
