"""Appointments: listing in each role's own scope."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import or_
from sqlmodel import col, select

from backend.audit.service import record_access
from backend.db import UnitOfWork
from backend.errors import NotFound, ValidationFailed
from backend.identity.models import Patient, Provider
from backend.scheduling import slot_marks
from backend.scheduling.models import (
    ACTIVE_APPOINTMENT_STATUSES,
    Appointment,
    AppointmentStatus,
    AvailabilityRule,
    TimeOff,
)
from backend.scheduling.policy import booking_rules
from backend.scheduling.slots import Interval, Slot, WeeklyRule, generate_slots
from backend.service import service_function
from backend.tenancy.context import Actor, Role
from backend.tenancy.models import Clinic
from backend.types import utcnow

MAX_SLOT_RANGE = timedelta(days=31)


@dataclass(frozen=True)
class AppointmentView:
    """An appointment with the names a page or an API client needs beside it."""

    id: uuid.UUID
    start_at: datetime
    end_at: datetime
    status: str
    modality: str
    provider_id: uuid.UUID
    provider_name: str
    patient_id: uuid.UUID | None
    patient_name: str
    clinic_id: uuid.UUID
    clinic_name: str
    clinic_timezone: str


@service_function
def list_appointments(
    actor: Actor,
    uow: UnitOfWork,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    clinic_id: uuid.UUID | None = None,
    provider_id: uuid.UUID | None = None,
    active_only: bool = False,
    limit: int = 200,
) -> list[AppointmentView]:
    """List appointments in the actor's scope: a patient's own, a doctor's own schedule, or the practice's."""
    query = (
        select(Appointment, Provider, Clinic, Patient)
        .join(Provider, col(Provider.id) == Appointment.provider_id)
        .join(Clinic, col(Clinic.id) == Appointment.clinic_id)
        .outerjoin(Patient, col(Patient.id) == Appointment.patient_id)
    )
    if actor.role == Role.PATIENT:
        query = query.where(Appointment.patient_id == actor.patient_id)
        # A patient never sees another patient's hold.
        query = query.where(Appointment.status != AppointmentStatus.HELD)
    elif actor.role == Role.DOCTOR:
        query = query.where(Appointment.provider_id == actor.provider_id)
    if provider_id is not None:
        query = query.where(Appointment.provider_id == provider_id)
    if clinic_id is not None:
        query = query.where(Appointment.clinic_id == clinic_id)
    if start is not None:
        query = query.where(Appointment.end_at > start)
    if end is not None:
        query = query.where(Appointment.start_at < end)
    if active_only:
        query = query.where(col(Appointment.status).in_(ACTIVE_APPOINTMENT_STATUSES))
    # A hold that has run out no longer occupies anything, even before the sweep releases it.
    query = query.where(
        or_(
            col(Appointment.status) != AppointmentStatus.HELD,
            col(Appointment.hold_expires_at).is_(None),
            col(Appointment.hold_expires_at) > utcnow(),
        )
    )
    query = query.order_by(col(Appointment.start_at)).limit(max(1, min(limit, 1000)))
    views = [
        AppointmentView(
            id=appt.id,
            start_at=appt.start_at,
            end_at=appt.end_at,
            status=str(appt.status),
            modality=appt.modality,
            provider_id=provider.id,
            provider_name=f"{provider.full_name}, {provider.title}" if provider.title else provider.full_name,
            patient_id=patient.id if patient else None,
            patient_name=patient.full_name if patient else "",
            clinic_id=clinic.id,
            clinic_name=clinic.name,
            clinic_timezone=clinic.timezone,
        )
        for appt, provider, clinic, patient in uow.session.exec(query)
    ]
    record_access(actor, uow, action="appointments.list", patient_ids=[v.patient_id for v in views])
    return views


def weekly_rules(uow: UnitOfWork, provider_id: uuid.UUID) -> list[WeeklyRule]:
    """The provider's weekly availability at clinics that are open (not archived), with each clinic's zone."""
    rows = uow.session.exec(
        select(AvailabilityRule, Clinic)
        .join(Clinic, col(Clinic.id) == AvailabilityRule.clinic_id)
        .where(AvailabilityRule.provider_id == provider_id, col(Clinic.archived_at).is_(None))
    )
    return [
        WeeklyRule(
            rule_id=rule.id,
            clinic_id=clinic.id,
            timezone=clinic.timezone,
            weekday=rule.weekday,
            start=rule.start_time,
            end=rule.end_time,
            session_minutes=rule.session_minutes,
            buffer_minutes=rule.buffer_minutes,
            modality=rule.modality,
            valid_from=rule.valid_from,
            valid_until=rule.valid_until,
        )
        for rule, clinic in rows
    ]


def time_off_intervals(uow: UnitOfWork, provider_id: uuid.UUID, start: datetime, end: datetime) -> list[Interval]:
    """A provider's time off that touches [start, end)."""
    return [
        Interval(t.start_at, t.end_at)
        for t in uow.session.exec(
            select(TimeOff).where(TimeOff.provider_id == provider_id, TimeOff.start_at < end, TimeOff.end_at > start)
        )
    ]


def busy_intervals(
    uow: UnitOfWork, provider_id: uuid.UUID, start: datetime, end: datetime, *, now: datetime
) -> tuple[list[Interval], list[Interval], list[Interval]]:
    """Time off, booked and live-held intervals of a provider that touch [start, end)."""
    time_off = time_off_intervals(uow, provider_id, start, end)
    booked: list[Interval] = []
    held: list[Interval] = []
    for appt in uow.session.exec(
        select(Appointment).where(
            Appointment.provider_id == provider_id,
            col(Appointment.status).in_(ACTIVE_APPOINTMENT_STATUSES),
            Appointment.start_at < end,
            Appointment.end_at > start,
        )
    ):
        if appt.status == AppointmentStatus.BOOKED:
            booked.append(Interval(appt.start_at, appt.end_at))
        elif appt.hold_expires_at is not None and appt.hold_expires_at > now:
            held.append(Interval(appt.start_at, appt.end_at))
    return time_off, booked, held


@service_function
def list_slots(
    actor: Actor,
    uow: UnitOfWork,
    provider_id: uuid.UUID,
    *,
    start: datetime,
    end: datetime,
    include_taken: bool = True,
) -> list[Slot]:
    """A provider's slots in [start, end) with status free, held or booked (every role may look)."""
    for name, value in (("start", start), ("end", end)):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValidationFailed(f"{name} needs a time zone offset, e.g. 2026-03-02T00:00:00Z", field=name)
    if end <= start:
        raise ValidationFailed("end must be after start", field="end")
    if end - start > MAX_SLOT_RANGE:
        raise ValidationFailed("ask for at most 31 days of slots at a time", field="end")
    provider = uow.session.get(Provider, provider_id)
    if provider is None or not provider.active:
        raise NotFound("provider")
    now = utcnow()
    rules = weekly_rules(uow, provider_id)
    if not rules:
        return []
    time_off, booked, held = busy_intervals(uow, provider_id, start, end, now=now)
    slots = generate_slots(
        rules,
        window_start=start,
        window_end=end,
        time_off=time_off,
        booked=booked,
        held=held,
        now=now,
        include_taken=True,
    )
    # Notice and horizon may differ per clinic.
    per_clinic = {clinic_id: booking_rules(uow, clinic_id) for clinic_id in {s.clinic_id for s in slots}}
    slots = [
        s
        for s in slots
        if now + per_clinic[s.clinic_id].min_notice <= s.start <= now + per_clinic[s.clinic_id].horizon
    ]
    being_booked = slot_marks.marked_starts(
        actor.tenant_id, provider_id, [s.start for s in slots if s.status == "free"]
    )
    if being_booked:
        slots = [replace(s, status="held") if s.start in being_booked else s for s in slots]
    if not include_taken:
        slots = [s for s in slots if s.status == "free"]
    return slots
