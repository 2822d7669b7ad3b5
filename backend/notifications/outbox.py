"""The transactional outbox: a state change records its notifications in its own transaction.

`notify` writes one Notification (plus its delivery-ledger row) per channel the patient opted into, inside the
caller's unit of work (backend.notifications.subscriber calls it for the domain's events, reminders for theirs):
a rolled-back change leaves no notification, a committed one always has its rows. After
commit each row is handed to Celery (the task "notifications.deliver", ids only, through backend.jobs); a lost
enqueue is caught by the beat sweep (backend.notifications.tasks.sweep_outbox_tick). When a notification may go
(quiet hours) is backend.notifications.quiet_hours.
"""

from __future__ import annotations

import functools
import logging
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BindParameter, TextClause, bindparam, text
from sqlmodel import select

from backend import jobs
from backend.db import UnitOfWork
from backend.errors import TenantScopeError
from backend.identity.models import Patient
from backend.notifications.models import Channel, Notification, NotificationDelivery, NotificationPreference
from backend.notifications.quiet_hours import (
    QUIET_HOURS_EVENTS,
    SILENT_CHANNELS,
    is_quiet_event,
    quiet_hours_email_now,
    quiet_hours_end,
)
from backend.settings import get_settings
from backend.tenancy.context import Actor
from backend.tenancy.models import Clinic
from backend.types import utcnow

logger = logging.getLogger(__name__)

__all__ = [
    "QUIET_HOURS_EVENTS",
    "SILENT_CHANNELS",
    "channel_mode",
    "enqueue_deliveries",
    "notify",
    "opted_in_channels",
    "quiet_hours_end",
]


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
    if pref is not None and is_quiet_event(event_type) and pref.quiet_hours_start and pref.quiet_hours_end:
        patient = uow.session.get(Patient, patient_id)
        zone = _zone_for(uow, patient, payload)
        held_until = quiet_hours_end(pref.quiet_hours_start, pref.quiet_hours_end, now, zone)
    email_now = True
    if held_until > now:
        email_now = quiet_hours_email_now(uow)
    starts_at = _appointment_start(uow, payload) if event_type == "appointment_reminder" else None
    rows: list[Notification] = []
    for channel in channels:
        due = now if (email_now and channel in SILENT_CHANNELS) else held_until
        if starts_at is not None and due >= starts_at:
            continue  # a reminder held past the start would only arrive too late
        note = Notification(tenant_id=actor.tenant_id, patient_id=patient_id, event_type=event_type, channel=channel,
                            payload=dict(payload), next_attempt_at=due, created_at=now)  # fmt: skip
        rows.append(note)
    if not rows:
        return []
    ledger = [
        NotificationDelivery(
            tenant_id=note.tenant_id,
            notification_id=note.id,
            next_attempt_at=note.next_attempt_at,
            created_at=now,
            updated_at=now,
        )
        for note in rows
    ]
    if uow.session.get_bind().dialect.name == "postgresql":
        _insert_with_ledger(uow, rows, ledger)
    else:
        uow.session.add_all(rows)
        uow.flush()  # the notifications exist before their ledger rows reference them
        uow.session.add_all(ledger)
        uow.flush()
    ids = [note.id for note in rows if note.next_attempt_at <= now]
    if ids:
        uow.after_commit(lambda: enqueue_deliveries(ids))
    return rows


def _param(prefix: str, row: int, column: str) -> str:
    """The bind parameter of one row's column in _ledger_statement ("n": notifications, "d": delivery rows)."""
    return f"{prefix}{row}_{column}"


@functools.lru_cache(maxsize=16)
def _ledger_statement(count: int) -> TextClause:
    """The statement that writes `count` notifications and their ledger rows: a data-modifying CTE (the ledger's
    foreign key is checked at the statement's end, when the notifications exist). Plain SQL, made once per row
    count: a multi-row VALUES of SQLAlchemy's is never in its statement cache, and compiling one cost a booking
    about as much CPU as the rest of its outbox. Every value is a bind parameter of its column's type, so
    encrypted and JSON columns are written as the ORM writes them."""
    notes_table = Notification.__table__  # type: ignore[attr-defined]
    ledger_table = NotificationDelivery.__table__  # type: ignore[attr-defined]
    params: list[BindParameter[Any]] = []

    def values(table: Any, prefix: str) -> str:
        rows = []
        for i in range(count):
            names = [_param(prefix, i, c.name) for c in table.columns]
            params.extend(bindparam(name, type_=c.type) for name, c in zip(names, table.columns, strict=True))
            rows.append("(" + ", ".join(f":{name}" for name in names) + ")")
        return ", ".join(rows)

    def columns(table: Any) -> str:
        return ", ".join(f'"{c.name}"' for c in table.columns)

    # The names are the tables' own and every value is a bind parameter.
    sql = (
        f"WITH notifications_written AS (INSERT INTO {notes_table.name} ({columns(notes_table)}) "  # noqa: S608
        f"VALUES {values(notes_table, 'n')}) "
        f"INSERT INTO {ledger_table.name} ({columns(ledger_table)}) VALUES {values(ledger_table, 'd')}"
    )
    return text(sql).bindparams(*params)


def _insert_with_ledger(uow: UnitOfWork, rows: list[Notification], ledger_rows: list[NotificationDelivery]) -> None:
    """PostgreSQL: the notifications and their delivery ledger rows in one statement (see _ledger_statement)."""
    notes_table = Notification.__table__  # type: ignore[attr-defined]
    ledger_table = NotificationDelivery.__table__  # type: ignore[attr-defined]
    values: dict[str, Any] = {}
    for prefix, table, objects in (("n", notes_table, rows), ("d", ledger_table, ledger_rows)):
        for i, obj in enumerate(objects):
            values.update({_param(prefix, i, c.name): getattr(obj, c.name) for c in table.columns})
    uow.session.execute(_ledger_statement(len(rows)), values)


def enqueue_deliveries(notification_ids: list[uuid.UUID]) -> None:
    """After commit: one delivery task per notification. A lost enqueue (broker down) is left to the sweep."""
    for notification_id in notification_ids:
        try:
            jobs.enqueue("notifications.deliver", str(notification_id))
        except Exception:
            logger.exception("could not enqueue notification %s; the outbox sweep will deliver it", notification_id)
