"""Appointment reminders: each practice's offsets, and the sweep that sends each reminder at most once.

When a reminder is due is decided in backend.notifications.reminder_schedule (pure). The sweep records what it
decided in `appointment_reminders` with INSERT ... ON CONFLICT DO NOTHING and writes the outbox rows
(`outbox.notify`) in the same transaction, only for the rows it inserted itself: a second sweep, concurrent or
later, inserts nothing and so sends nothing; a rolled-back sweep leaves neither a reminder row nor a
notification.

Rescheduling: `booking.reschedule_appointment` cancels the old appointment and books a new row (new id, new
created_at), so reminders need no extra bookkeeping. The old one is no longer booked and gets no more
reminders; the new one starts with no reminder rows and gets the offsets still ahead of it (those whose moment
was past when it was moved are skipped: the patient just got the `appointment_rescheduled` notice).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import and_, exists, or_, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select

from backend.audit.service import record
from backend.db import UnitOfWork
from backend.errors import ValidationFailed
from backend.notifications import outbox
from backend.notifications.models import AppointmentReminder, NotificationSettings
from backend.notifications.reminder_schedule import FIELD, MAX_OFFSET_MINUTES, check_offsets, decide_reminder
from backend.scheduling.models import Appointment, AppointmentStatus
from backend.service import require_role, service_function
from backend.settings import get_settings
from backend.tenancy.context import Actor, Role
from backend.types import new_id, utcnow

logger = logging.getLogger(__name__)

EVENT_TYPE = "appointment_reminder"


# --- settings ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NotificationSettingsView:
    """The practice's reminder offsets (minutes before the start, largest first) and where they come from."""

    reminder_offsets_minutes: list[int]
    quiet_hours_email_now: bool  # in quiet hours e-mail goes at once and texts wait (False: everything waits)
    source: str  # "practice" (set by an admin) or "default" (from settings)
    updated_at: datetime | None


def _settings_row(uow: UnitOfWork) -> NotificationSettings | None:
    return uow.session.exec(select(NotificationSettings)).first()


def reminder_offsets(uow: UnitOfWork) -> list[int]:
    """The reminder offsets in force in the unit of work's practice."""
    row = _settings_row(uow)
    return list(row.reminder_offsets_minutes) if row is not None else get_settings().reminder_offsets_minutes


def _view(row: NotificationSettings | None) -> NotificationSettingsView:
    if row is None:
        return NotificationSettingsView(get_settings().reminder_offsets_minutes, True, "default", None)
    return NotificationSettingsView(
        list(row.reminder_offsets_minutes), row.quiet_hours_email_now, "practice", row.updated_at
    )


@service_function
def get_notification_settings(actor: Actor, uow: UnitOfWork) -> NotificationSettingsView:
    """Read the practice's notification settings (admin)."""
    require_role(actor, Role.ADMIN)
    return _view(_settings_row(uow))


@service_function
def update_notification_settings(
    actor: Actor,
    uow: UnitOfWork,
    *,
    reminder_offsets_minutes: list[int],
    quiet_hours_email_now: bool | None = None,
) -> NotificationSettingsView:
    """Set the practice's reminder offsets (admin): 0-4 offsets, each 15 minutes .. 14 days, no duplicates;
    and, when given, its quiet-hours rule."""
    require_role(actor, Role.ADMIN)
    if not isinstance(reminder_offsets_minutes, list | tuple):
        raise ValidationFailed("Give the reminder offsets as a list of minutes, e.g. [2880, 120].", field=FIELD)
    try:
        offsets = check_offsets(reminder_offsets_minutes)
    except ValueError as exc:
        raise ValidationFailed(str(exc), field=FIELD) from exc
    if uow.session.get_bind().dialect.name == "postgresql":
        # Two admins saving at once: the second waits and updates the first one's row instead of colliding.
        uow.session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
            {"key": f"{uow.tenant_id}:notification-settings"},
        )
    row = _settings_row(uow)
    before = list(row.reminder_offsets_minutes) if row is not None else None
    email_before = row.quiet_hours_email_now if row is not None else True
    email_now = email_before if quiet_hours_email_now is None else bool(quiet_hours_email_now)
    if row is not None and before == offsets and email_before == email_now:
        return _view(row)
    now = utcnow()
    if row is None:
        row = NotificationSettings(
            tenant_id=actor.tenant_id, reminder_offsets_minutes=offsets, quiet_hours_email_now=email_now, updated_at=now
        )
    else:
        row.reminder_offsets_minutes = offsets
        row.quiet_hours_email_now = email_now
        row.updated_at = now
    uow.session.add(row)
    uow.flush()
    record(actor, uow, action="notification.settings_changed", entity_type="notification_settings",
           entity_id=row.id, data={FIELD: offsets, "before": before, "quiet_hours_email_now": email_now})  # fmt: skip
    return _view(row)


# --- the sweep --------------------------------------------------------------------------------------------


def _mark_done(uow: UnitOfWork, appointment: Appointment, offsets: tuple[int, ...], now: datetime) -> set[int]:
    """Insert the reminder rows that are not there yet; return the offsets this transaction inserted."""
    dialect = uow.session.get_bind().dialect.name
    insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table: sa.Table = AppointmentReminder.__table__  # type: ignore[attr-defined]
    values = [
        {"id": new_id(), "tenant_id": appointment.tenant_id, "appointment_id": appointment.id,
         "offset_minutes": offset, "created_at": now}
        for offset in offsets
    ]  # fmt: skip
    statement = (
        insert(table)
        .values(values)
        .on_conflict_do_nothing(index_elements=["appointment_id", "offset_minutes"])
        .returning(table.c.offset_minutes)
    )
    return set(uow.session.execute(statement).scalars())


def send_tenant_reminders(actor: Actor, uow: UnitOfWork, *, now: datetime) -> int:
    """One practice: record the reminders that are due now and write their notifications; returns how many
    reminders were written to the outbox (skipped offsets and opted-out patients are recorded, not counted)."""
    offsets = reminder_offsets(uow)
    if not offsets:
        return 0
    horizon = now + timedelta(minutes=max(offsets))
    # Only appointments with a passed offset that has no row yet: the rest were decided by an earlier sweep.
    undecided = or_(
        *(
            and_(
                col(Appointment.start_at) <= now + timedelta(minutes=offset),
                ~exists().where(
                    col(AppointmentReminder.appointment_id) == Appointment.id,
                    col(AppointmentReminder.offset_minutes) == offset,
                ),
            )
            for offset in offsets
        )
    )
    query = (
        select(Appointment)
        .where(
            col(Appointment.status) == AppointmentStatus.BOOKED,
            col(Appointment.patient_id).is_not(None),
            col(Appointment.start_at) > now,
            col(Appointment.start_at) <= horizon,
            undecided,
        )
        .order_by(col(Appointment.start_at), col(Appointment.id))  # one order for every sweep: no deadlocks
        # A row being cancelled or moved right now is skipped: the next tick sees how that ended.
        .with_for_update(read=True, skip_locked=True, of=Appointment)  # type: ignore[arg-type]
    )
    appointments = list(uow.session.exec(query))
    if not appointments:
        return 0
    done: dict[uuid.UUID, set[int]] = {}
    for appointment_id, offset in uow.session.exec(
        select(AppointmentReminder.appointment_id, AppointmentReminder.offset_minutes).where(
            col(AppointmentReminder.appointment_id).in_([a.id for a in appointments])
        )
    ):
        done.setdefault(appointment_id, set()).add(offset)
    sent = 0
    for appointment in appointments:
        decision = decide_reminder(now=now, start=appointment.start_at, created_at=appointment.created_at,
                                   offsets=offsets, done=done.get(appointment.id, set()))  # fmt: skip
        if not decision.mark_done:
            continue
        inserted = _mark_done(uow, appointment, decision.mark_done, now)
        if decision.send is None or decision.send not in inserted or appointment.patient_id is None:
            continue  # skipped, or another sweep got there first
        # No rows when the patient opted out: the reminder is still done (recorded above), just not sent.
        if outbox.notify(actor, uow, patient_id=appointment.patient_id, event_type=EVENT_TYPE, payload={
                "appointment_id": str(appointment.id), "clinic_id": str(appointment.clinic_id)}):  # fmt: skip
            sent += 1
    return sent


def _tenants_with_upcoming(now: datetime) -> list[uuid.UUID]:
    with UnitOfWork(system=True) as uow:
        query = (
            select(Appointment.tenant_id)
            .where(
                col(Appointment.status) == AppointmentStatus.BOOKED,
                col(Appointment.patient_id).is_not(None),
                col(Appointment.start_at) > now,
                col(Appointment.start_at) <= now + timedelta(minutes=MAX_OFFSET_MINUTES),
            )
            .distinct()
        )
        return sorted(set(uow.session.exec(query)))


def send_due_reminders(now: datetime | None = None) -> int:
    """Every practice, one transaction each: send the appointment reminders that are due (each at most once)."""
    now = now or utcnow()
    total = 0
    for tenant_id in _tenants_with_upcoming(now):
        actor = Actor.system(tenant_id)
        try:
            with UnitOfWork(actor) as uow:
                sent = send_tenant_reminders(actor, uow, now=now)
                uow.commit()
        except Exception:
            logger.exception("sending the reminders of tenant %s failed", tenant_id)
            continue
        total += sent
    return total
