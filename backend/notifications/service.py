"""Notification preferences, history and the admin outbox: what people do with notifications.

- A patient reads and changes their own channel opt-ins and quiet hours; staff read them (a doctor only for
  patients who have an appointment or a waitlist entry with them); nobody else changes them.
- A patient reads their own notification history; the admin reads the practice's outbox, filtered, reads
  any message as the patient got it, and sends a failed or dead-lettered one again.
- The e-mail unsubscribe link carries a signed token (no login): it turns e-mail, or every channel, off.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any

from sqlalchemy import func, or_
from sqlmodel import col, select

from backend import events
from backend.audit.service import record, record_access
from backend.db import UnitOfWork
from backend.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from backend.identity.models import Patient, ProviderClinic, User
from backend.notifications.models import (
    Channel,
    Notification,
    NotificationDelivery,
    NotificationPreference,
    NotificationStatus,
)
from backend.notifications.outbox import channel_mode, enqueue_deliveries
from backend.notifications.preferences import locked_preference, read_unsubscribe_token
from backend.notifications.reports import LABELS as PROVIDER_STATUS_LABELS
from backend.notifications.templates import normalise_locale
from backend.scheduling.models import Appointment
from backend.service import require_role, service_function
from backend.tenancy.context import Actor, Role
from backend.tenancy.models import Tenant
from backend.types import utcnow
from backend.waitlist.models import WaitlistEntry

S = NotificationStatus
STATUSES = tuple(s.value for s in NotificationStatus)
CHANNELS = tuple(c.value for c in Channel)
RETRYABLE_BY_ADMIN = (S.FAILED, S.DEAD)
MAX_PAGE = 200

EVENT_LABELS = {
    "appointment_booked": "Appointment booked",
    "appointment_cancelled": "Appointment cancelled",
    "appointment_rescheduled": "Appointment moved",
    "appointment_reminder": "Appointment reminder",
    "waitlist_offer": "Waitlist offer",
    "waitlist_offer_expired": "Offer expired",
    "waitlist_entry_expired": "Waitlist entry expired",
    "waitlist_reconfirm": "Still interested?",
    "waitlist_entry_moved": "Waitlist moved (clinic archived)",
    "waitlist_entry_closed": "Waitlist closed (clinic archived)",
    "account_invite": "Invitation to set a password",
    "password_reset": "Password reset link",
    "registration_verify": "Registration: verify e-mail",
    "registration_exists": "Registration: already has an account",
}


# --- views ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreferencesView:
    patient_id: uuid.UUID
    email_opt_in: bool
    sms_opt_in: bool
    whatsapp_opt_in: bool
    quiet_hours_start: str | None  # "HH:MM" in the patient's clinic zone
    quiet_hours_end: str | None
    unsubscribed: bool  # every channel stopped through the unsubscribe link
    has_email: bool
    has_phone: bool
    channel_mode: str  # "console": nothing leaves the system; the outbox is the message
    updated_at: datetime | None
    language: str = "en"  # of the patient's pages and messages (patients.locale; preferences.set_language)

    @property
    def chosen_channels(self) -> list[str]:
        """The channels the patient hears on, in order ("email", "sms", "whatsapp"); none once unsubscribed."""
        if self.unsubscribed:
            return []
        chosen = (("email", self.email_opt_in), ("sms", self.sms_opt_in), ("whatsapp", self.whatsapp_opt_in))
        return [name for name, on in chosen if on]

    def as_dict(self) -> dict[str, Any]:
        return {
            "patient_id": str(self.patient_id),
            "email_opt_in": self.email_opt_in,
            "sms_opt_in": self.sms_opt_in,
            "whatsapp_opt_in": self.whatsapp_opt_in,
            "quiet_hours_start": self.quiet_hours_start,
            "quiet_hours_end": self.quiet_hours_end,
            "unsubscribed": self.unsubscribed,
            "has_email": self.has_email,
            "has_phone": self.has_phone,
            "channel_mode": self.channel_mode,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
            "language": self.language,
        }


@dataclass(frozen=True)
class PreferencesUpdate:
    email_opt_in: bool
    sms_opt_in: bool
    whatsapp_opt_in: bool
    quiet_hours_start: str | None = None  # "HH:MM"; both or neither
    quiet_hours_end: str | None = None


@dataclass(frozen=True)
class NotificationView:
    id: uuid.UUID
    patient_id: uuid.UUID | None  # None: an account message to a staff member (backend/identity/onboarding.py)
    patient_name: str
    event_type: str
    event_label: str
    channel: str
    status: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    sent_at: datetime | None
    last_error: str
    # What the provider reported after taking it ('' for nothing yet), readable, and when.
    provider_status: str = ""
    provider_status_label: str = ""
    provider_status_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "patient_id": str(self.patient_id) if self.patient_id else None,
            "patient_name": self.patient_name,
            "event_type": self.event_type,
            "event_label": self.event_label,
            "channel": self.channel,
            "status": self.status,
            "attempts": self.attempts,
            "created_at": self.created_at.isoformat(),
            "next_attempt_at": self.next_attempt_at.isoformat(),
            "sent_at": self.sent_at.isoformat() if self.sent_at else None,
            "last_error": self.last_error,
            "provider_status": self.provider_status,
            "provider_status_label": self.provider_status_label,
            "provider_status_at": self.provider_status_at.isoformat() if self.provider_status_at else None,
        }


@dataclass(frozen=True)
class MessageView:
    """A notification rendered as its patient got (or will get) it."""

    notification: NotificationView
    to: str
    subject: str
    text: str

    def as_dict(self) -> dict[str, Any]:
        return {**self.notification.as_dict(), "to": self.to, "subject": self.subject, "text": self.text}


# --- helpers ----------------------------------------------------------------------------------------------


def _hhmm(value: time | None) -> str | None:
    return value.strftime("%H:%M") if value is not None else None


def parse_hhmm(raw: str | None, field: str) -> time | None:
    if raw is None or str(raw).strip() == "":
        return None
    try:
        hours, minutes = str(raw).strip().split(":")
        return time(int(hours), int(minutes))
    except (ValueError, TypeError):
        raise ValidationFailed(f"{field.replace('_', ' ')} must be a time like 21:00", field=field) from None


def _patient(uow: UnitOfWork, patient_id: uuid.UUID) -> Patient:
    patient = uow.session.get(Patient, patient_id)
    if patient is None:
        raise NotFound("patient")
    return patient


def _treats(uow: UnitOfWork, provider_id: uuid.UUID | None, patient_id: uuid.UUID) -> bool:
    if provider_id is None:
        return False
    appointment = uow.session.exec(
        select(Appointment.id).where(Appointment.provider_id == provider_id, Appointment.patient_id == patient_id)
    ).first()
    if appointment is not None:
        return True
    # A waitlist entry for them, or for "any provider" at a clinic where they work (their console shows both).
    clinics = select(ProviderClinic.clinic_id).where(ProviderClinic.provider_id == provider_id)
    entry = uow.session.exec(
        select(WaitlistEntry.id).where(
            WaitlistEntry.patient_id == patient_id,
            or_(
                col(WaitlistEntry.provider_id) == provider_id,
                col(WaitlistEntry.provider_id).is_(None) & col(WaitlistEntry.clinic_id).in_(clinics),
            ),
        )
    ).first()
    return entry is not None


def _readable_patient(actor: Actor, uow: UnitOfWork, patient_id: uuid.UUID | None) -> Patient:
    """The patient whose notifications the actor may read: their own, or (staff) one they may see."""
    if actor.role == Role.PATIENT:
        if patient_id is not None and patient_id != actor.patient_id:
            raise NotFound("patient")
        if actor.patient_id is None:
            raise PermissionDenied("your account has no patient record")
        return _patient(uow, actor.patient_id)
    if patient_id is None:
        raise ValidationFailed("patient_id is required", field="patient_id")
    patient = _patient(uow, patient_id)
    if actor.role == Role.DOCTOR and not _treats(uow, actor.provider_id, patient.id):
        raise NotFound("patient")
    if actor.role not in (Role.DOCTOR, Role.ADMIN, Role.SYSTEM):
        raise PermissionDenied("your role may not do this")
    return patient


def _preference(uow: UnitOfWork, patient_id: uuid.UUID) -> NotificationPreference | None:
    return uow.session.exec(
        select(NotificationPreference).where(NotificationPreference.patient_id == patient_id)
    ).first()


def _preferences_view(patient: Patient, pref: NotificationPreference | None) -> PreferencesView:
    return PreferencesView(
        patient_id=patient.id,
        email_opt_in=pref.email_opt_in if pref else True,
        sms_opt_in=pref.sms_opt_in if pref else False,
        whatsapp_opt_in=pref.whatsapp_opt_in if pref else False,
        quiet_hours_start=_hhmm(pref.quiet_hours_start) if pref else None,
        quiet_hours_end=_hhmm(pref.quiet_hours_end) if pref else None,
        unsubscribed=bool(pref and pref.unsubscribed_at is not None),
        has_email=bool(patient.email),
        has_phone=bool(patient.phone),
        channel_mode=channel_mode(),
        updated_at=pref.updated_at if pref else None,
        language=normalise_locale(patient.locale),
    )


def _view(note: Notification, patient_name: str) -> NotificationView:
    return NotificationView(
        id=note.id,
        patient_id=note.patient_id,
        patient_name=patient_name,
        event_type=note.event_type,
        event_label=EVENT_LABELS.get(note.event_type, note.event_type.replace("_", " ").capitalize()),
        channel=str(note.channel),
        status=str(note.status),
        attempts=note.attempts,
        created_at=note.created_at,
        next_attempt_at=note.next_attempt_at,
        sent_at=note.sent_at,
        last_error=note.last_error,
        provider_status=note.provider_status,
        provider_status_label=PROVIDER_STATUS_LABELS.get(note.provider_status, note.provider_status),
        provider_status_at=note.provider_status_at,
    )


# --- preferences ------------------------------------------------------------------------------------------


@service_function
def get_preferences(actor: Actor, uow: UnitOfWork, patient_id: uuid.UUID | None = None) -> PreferencesView:
    """A patient's channel opt-ins and quiet hours (their own; staff: a patient they may see: the admin any,
    a doctor one with an appointment or a waitlist entry they can see)."""
    patient = _readable_patient(actor, uow, patient_id)
    record_access(actor, uow, action="notifications.preferences", patient_ids=[patient.id])
    return _preferences_view(patient, _preference(uow, patient.id))


@service_function
def update_preferences(actor: Actor, uow: UnitOfWork, update: PreferencesUpdate) -> PreferencesView:
    """The patient changes their own preferences (staff may read them, never change them). Audited with the
    names of the changed fields; opting into any channel again lifts an earlier 'stop everything'."""
    require_role(actor, Role.PATIENT)
    patient = _readable_patient(actor, uow, None)
    start = parse_hhmm(update.quiet_hours_start, "quiet_hours_start")
    end = parse_hhmm(update.quiet_hours_end, "quiet_hours_end")
    if (start is None) != (end is None):
        field = "quiet_hours_end" if end is None else "quiet_hours_start"
        raise ValidationFailed("give both the start and the end of your quiet hours, or neither", field=field)
    if start is not None and start == end:
        raise ValidationFailed("quiet hours must not start and end at the same time", field="quiet_hours_end")
    if (update.sms_opt_in or update.whatsapp_opt_in) and not patient.phone:
        field = "sms_opt_in" if update.sms_opt_in else "whatsapp_opt_in"
        raise ValidationFailed("add a mobile number to your record before choosing text messages", field=field)
    if update.email_opt_in and not patient.email:
        raise ValidationFailed("add an e-mail address to your record before choosing e-mail", field="email_opt_in")
    pref = locked_preference(uow, actor.tenant_id, patient.id)
    wanted: dict[str, Any] = {
        "email_opt_in": update.email_opt_in,
        "sms_opt_in": update.sms_opt_in,
        "whatsapp_opt_in": update.whatsapp_opt_in,
        "quiet_hours_start": start,
        "quiet_hours_end": end,
    }
    changed = sorted(name for name, value in wanted.items() if getattr(pref, name) != value)
    if pref.unsubscribed_at is not None and (update.email_opt_in or update.sms_opt_in or update.whatsapp_opt_in):
        pref.unsubscribed_at = None
        changed.append("resubscribed")
    for name, value in wanted.items():
        setattr(pref, name, value)
    if changed:
        pref.updated_at = utcnow()
        uow.session.add(pref)
        record(actor, uow, action="notification.preferences_changed", entity_type="patient", entity_id=patient.id,
               data={"fields": changed})  # fmt: skip
        uow.flush()
    return _preferences_view(patient, pref)


@service_function
def unsubscribe(actor: Actor, uow: UnitOfWork, patient_id: uuid.UUID, *, everything: bool = False) -> PreferencesView:
    """The e-mail unsubscribe link (run as the system actor of the token's practice): e-mail off, or with
    `everything` every channel off until the patient opts in again. Audited."""
    require_role(actor, Role.SYSTEM)
    patient = _patient(uow, patient_id)
    pref = locked_preference(uow, actor.tenant_id, patient.id)
    pref.email_opt_in = False
    if everything and pref.unsubscribed_at is None:
        pref.unsubscribed_at = utcnow()
    pref.updated_at = utcnow()
    uow.session.add(pref)
    record(actor, uow, action="notification.opted_out", entity_type="patient", entity_id=patient.id,
           data={"channel": "all" if everything else "email", "via": "unsubscribe_link"})  # fmt: skip
    uow.flush()
    return _preferences_view(patient, pref)


def unsubscribe_with_token(token: str, *, everything: bool = False) -> str:
    """Carry out an unsubscribe link: turn e-mail (or every channel) off. Returns the practice's name.
    ValueError for a bad token or an unknown patient."""
    tenant_id, patient_id = read_unsubscribe_token(token)
    actor = Actor.system(tenant_id)
    try:
        with UnitOfWork(actor) as uow:
            unsubscribe(actor, uow, patient_id, everything=everything)
            tenant = uow.session.get(Tenant, tenant_id)
            name = tenant.name if tenant is not None else ""
            uow.commit()
    except NotFound as exc:
        raise ValueError("this unsubscribe link is not valid") from exc
    return name


def practice_for_token(token: str) -> str:
    """The practice an unsubscribe link belongs to (for the confirmation page); ValueError when invalid."""
    tenant_id, patient_id = read_unsubscribe_token(token)
    with UnitOfWork(Actor.system(tenant_id)) as uow:
        tenant = uow.session.get(Tenant, tenant_id)
        if tenant is None or uow.session.get(Patient, patient_id) is None:
            raise ValueError("this unsubscribe link is not valid")
        return tenant.name


# --- history and outbox -----------------------------------------------------------------------------------


@service_function
def list_notifications(
    actor: Actor,
    uow: UnitOfWork,
    *,
    status: str | None = None,
    channel: str | None = None,
    event_type: str | None = None,
    patient_id: uuid.UUID | None = None,
    limit: int = 100,
) -> list[NotificationView]:
    """Newest first. A patient gets their own history (filters apply within it); the admin gets the practice's
    outbox; doctors have no outbox."""
    if actor.role == Role.PATIENT:
        patient_id = _readable_patient(actor, uow, patient_id).id
    else:
        require_role(actor, Role.ADMIN)
    if status and status not in STATUSES:
        raise ValidationFailed(f"status must be one of {', '.join(STATUSES)}", field="status")
    if channel and channel not in CHANNELS:
        raise ValidationFailed(f"channel must be one of {', '.join(CHANNELS)}", field="channel")
    if not 1 <= limit <= MAX_PAGE:
        raise ValidationFailed(f"limit must be between 1 and {MAX_PAGE}", field="limit")
    # Outer: an account message to a staff member (invitation, password reset) concerns no patient.
    query = select(Notification, Patient.full_name).outerjoin(
        Patient, col(Patient.id) == col(Notification.patient_id)
    )
    if status:
        query = query.where(Notification.status == status)
    if channel:
        query = query.where(Notification.channel == channel)
    if event_type:
        query = query.where(Notification.event_type == event_type)
    if patient_id is not None:
        query = query.where(Notification.patient_id == patient_id)
    rows = uow.session.exec(query.order_by(col(Notification.created_at).desc(), col(Notification.id)).limit(limit))
    views = [_view(note, name if name is not None else _recipient_name(uow, note)) for note, name in rows]
    patient_ids = [v.patient_id for v in views if v.patient_id is not None]
    record_access(actor, uow, action="notifications.list", patient_ids=patient_ids)
    return views


def _recipient_name(uow: UnitOfWork, note: Notification) -> str:
    """Who an account message without a patient goes to: the staff member its payload names, or the newcomer
    whose registration it verifies."""
    from backend.identity.onboarding import recipient_name

    registering = recipient_name(uow, note.payload or {})
    if registering is not None:
        return registering
    raw = (note.payload or {}).get("user_id")
    try:
        user = uow.session.get(User, uuid.UUID(str(raw))) if raw else None
    except ValueError:
        user = None
    return f"{user.full_name} (staff)" if user is not None else "(staff)"


@service_function
def outbox_counts(actor: Actor, uow: UnitOfWork) -> dict[str, int]:
    """How many of the practice's notifications are in each status (every status present, zeros included)."""
    require_role(actor, Role.ADMIN)
    counts = dict.fromkeys(STATUSES, 0)
    rows = uow.session.exec(select(Notification.status, func.count()).group_by(col(Notification.status)))
    for status, count in rows:
        counts[str(status)] = int(count)
    return counts


def _visible_notification(
    actor: Actor, uow: UnitOfWork, notification_id: uuid.UUID
) -> tuple[Notification, Patient | None]:
    if actor.role != Role.PATIENT:
        require_role(actor, Role.ADMIN)  # before the lookup: a doctor learns nothing about which ids exist
    note = uow.session.get(Notification, notification_id)
    if note is None or (actor.role == Role.PATIENT and note.patient_id != actor.patient_id):
        raise NotFound("notification")
    return note, _patient(uow, note.patient_id) if note.patient_id is not None else None


@service_function
def read_message(actor: Actor, uow: UnitOfWork, notification_id: uuid.UUID) -> MessageView:
    """The message as its channel carries it, rendered from the records it names (the console channel's
    messages are read this way). The patient reads their own; the admin any in the practice."""
    from backend.notifications import templates
    from backend.notifications.delivery import load_context, render_message

    note, patient = _visible_notification(actor, uow, notification_id)
    if patient is not None:
        record_access(actor, uow, action="notifications.read", patient_ids=[patient.id])
    name = patient.full_name if patient is not None else _recipient_name(uow, note)
    try:
        message = render_message(uow, note)
    except templates.TemplateContextError as exc:
        recipient = load_context(uow, note)[1]
        return MessageView(_view(note, name), recipient, "", f"(This message cannot be shown: {exc})")
    return MessageView(_view(note, name), message.to, message.subject, hide_link(note, message.text))


def hide_link(note: Notification, text: str) -> str:
    """An account link (invitation, password reset) is a key to the account: only the console channel, whose
    outbox is the message (nothing leaves the machine), shows it to the reader; a message that went to the person
    by e-mail or SMS is shown without it."""
    from backend.identity.onboarding import LINK_EVENTS, PATH_BY_PURPOSE

    if note.event_type not in LINK_EVENTS or str(note.channel) == "console":
        return text
    for path in PATH_BY_PURPOSE.values():
        text = re.sub(re.escape(path) + r"[A-Za-z0-9_-]+", path + "…(hidden: sent to the person only)", text)
    return text


@service_function
def retry_notification(actor: Actor, uow: UnitOfWork, notification_id: uuid.UUID) -> NotificationView:
    """The admin sends a failed or dead-lettered message again: its ledger row goes back to pending with a
    fresh attempt budget and is enqueued after commit. A sent, pending or in-flight one is refused (409), so
    a retry can never make a second copy. Audited."""
    require_role(actor, Role.ADMIN)
    note, patient = _visible_notification(actor, uow, notification_id)
    ledger = uow.session.exec(
        select(NotificationDelivery).where(NotificationDelivery.notification_id == note.id).with_for_update()
    ).first()
    if ledger is None:
        raise NotFound("notification")
    status = S(ledger.status)
    if status not in RETRYABLE_BY_ADMIN:
        reason = {
            S.SENT: "it was already sent",
            S.PENDING: "it is already waiting to be sent",
            S.SENDING: "it is being sent right now",
            S.UNKNOWN: "its delivery is being checked with the provider first",
        }.get(status, f"it is {status}")
        raise Conflict(f"This message cannot be sent again: {reason}.")
    now = utcnow()
    previous = {"status": str(status), "attempts": ledger.attempts}
    for row in (ledger, note):
        row.status = S.PENDING
        row.attempts = 0
        row.next_attempt_at = now
    ledger.updated_at = now
    uow.session.add(ledger)
    uow.session.add(note)
    record(actor, uow, action="notification.retried", entity_type="notification", entity_id=note.id,
           data={"previous": previous})  # fmt: skip
    uow.flush()
    events.emit(uow, "notification.changed", entity_id=note.id, patient_id=note.patient_id)
    uow.after_commit(lambda: enqueue_deliveries([note.id]))
    return _view(note, patient.full_name if patient is not None else _recipient_name(uow, note))
