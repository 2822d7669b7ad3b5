"""The transactional outbox: a state change records its notifications in its own transaction.

`notify` writes one Notification (plus its delivery-ledger row) per channel the patient opted into, inside the
caller's unit of work: a rolled-back change leaves no notification, a committed one always has its rows. After
commit each row is handed to Celery (`deliver_notification`, ids only); a lost enqueue is caught by the beat
sweep (backend.notifications.tasks.sweep_outbox_tick).
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlmodel import select

from backend.db import UnitOfWork
from backend.errors import TenantScopeError
from backend.identity.models import Patient
from backend.notifications.models import Channel, Notification, NotificationDelivery, NotificationPreference
from backend.settings import get_settings
from backend.tenancy.context import Actor
from backend.tenancy.models import Clinic
from backend.types import utcnow

logger = logging.getLogger(__name__)

# Events a patient may be spared in their quiet hours (sent when the hours end); the rest (confirmations,
# cancellations) are sent at once. By the practice's rule (notification_settings.quiet_hours_email_now, on by
# default) e-mail, which makes no sound, still goes at once and only texts wait.
QUIET_HOURS_EVENTS = frozenset({"waitlist_offer", "appointment_reminder"})
SILENT_CHANNELS = frozenset({Channel.EMAIL, Channel.CONSOLE})


def channel_mode() -> str:
    """'console' (the default: every notification goes to the console channel) or 'live'."""
    return str(getattr(get_settings(), "notifications_channel_mode", "console") or "console")


def opted_in_channels(pref: NotificationPreference | None) -> list[Channel]:
    """The patient's channels (defaults: email on, SMS and WhatsApp off); none once they unsubscribed."""
    if pref is None:
        return [Channel.EMAIL]
    if pref.unsubscribed_at is not None:
        return []
    chosen = [(pref.email_opt_in, Channel.EMAIL), (pref.sms_opt_in, Channel.SMS),
              (pref.whatsapp_opt_in, Channel.WHATSAPP)]  # fmt: skip
    return [channel for on, channel in chosen if on]


def quiet_hours_end(start: time | None, end: time | None, moment: datetime, zone: str) -> datetime:
    """The end of the quiet hours containing `moment`, read in `zone` (or `moment` when outside them)."""
    if start is None or end is None or start == end:
        return moment
    local = moment.astimezone(ZoneInfo(zone))
    now = local.time()
    inside = start <= now < end if start < end else now >= start or now < end
    if not inside:
        return moment
    until = datetime.combine(local.date(), end, tzinfo=ZoneInfo(zone))
    if until <= local:
        until += timedelta(days=1)
    return until.astimezone(moment.tzinfo)


def _is_quiet_event(event_type: str) -> bool:
    return event_type in QUIET_HOURS_EVENTS


def _appointment_start(uow: UnitOfWork, payload: dict[str, str]) -> datetime | None:
    from backend.scheduling.models import Appointment

    raw = payload.get("appointment_id")
    if not raw:
        return None
    appointment = uow.session.get(Appointment, uuid.UUID(raw))
    return appointment.start_at if appointment is not None else None


def _zone_for(uow: UnitOfWork, patient: Patient | None, payload: dict[str, str]) -> str:
    clinic_id = payload.get("clinic_id")
    if not clinic_id and patient is not None and patient.home_clinic_id is not None:
        clinic_id = str(patient.home_clinic_id)
    if clinic_id:
        clinic = uow.session.get(Clinic, uuid.UUID(clinic_id))
        if clinic is not None:
            return clinic.timezone
    return "UTC"


def notify(
    actor: Actor,
    uow: UnitOfWork,
    *,
    patient_id: uuid.UUID,
    event_type: str,
    payload: dict[str, str],
) -> list[Notification]:
    """Record the notifications of one event for one patient in the caller's transaction (ids only in
    `payload`); enqueue their delivery after commit. Returns the rows written (none if the patient opted out)."""
    if uow.tenant_id is None or uow.tenant_id != actor.tenant_id:
        raise TenantScopeError("notifications are written in the actor's own tenant")
    if any(not isinstance(v, str) for v in payload.values()):
        raise TypeError("notification payloads carry string ids only")
    pref = uow.session.exec(
        select(NotificationPreference).where(NotificationPreference.patient_id == patient_id)
    ).first()
    channels = opted_in_channels(pref)
    if not channels:
        return []
    if channel_mode() == "console":
        channels = [Channel.CONSOLE]
    now = utcnow()
    held_until = now
    if pref is not None and _is_quiet_event(event_type) and pref.quiet_hours_start and pref.quiet_hours_end:
        patient = uow.session.get(Patient, patient_id)
        zone = _zone_for(uow, patient, payload)
        held_until = quiet_hours_end(pref.quiet_hours_start, pref.quiet_hours_end, now, zone)
    email_now = True
    if held_until > now:
        from backend.notifications.reminders import quiet_hours_email_now

        email_now = quiet_hours_email_now(uow)
    starts_at = _appointment_start(uow, payload) if event_type == "appointment_reminder" else None
    rows: list[Notification] = []
    for channel in channels:
        due = now if (email_now and channel in SILENT_CHANNELS) else held_until
        if starts_at is not None and due >= starts_at:
            continue  # a reminder held past the start would only arrive too late
        note = Notification(tenant_id=actor.tenant_id, patient_id=patient_id, event_type=event_type, channel=channel,
                            payload=dict(payload), next_attempt_at=due, created_at=now)  # fmt: skip
        uow.session.add(note)
        rows.append(note)
    if not rows:
        return []
    uow.flush()  # the notifications exist before their ledger rows reference them
    for note in rows:
        uow.session.add(NotificationDelivery(tenant_id=actor.tenant_id, notification_id=note.id,
                                             next_attempt_at=note.next_attempt_at, created_at=now,
                                             updated_at=now))  # fmt: skip
    uow.flush()
    ids = [note.id for note in rows if note.next_attempt_at <= now]
    if ids:
        uow.after_commit(lambda: enqueue_deliveries(ids))
    return rows


def enqueue_deliveries(notification_ids: list[uuid.UUID]) -> None:
    """After commit: one delivery task per notification. A lost enqueue (broker down) is left to the sweep."""
    from backend.notifications.tasks import deliver_notification

    for notification_id in notification_ids:
        try:
            deliver_notification.delay(str(notification_id))
        except Exception:
            logger.exception("could not enqueue notification %s; the outbox sweep will deliver it", notification_id)
