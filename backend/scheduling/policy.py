"""Who may do what with appointments, and which booking rules apply where."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from sqlmodel import col, select

from backend.db import UnitOfWork
from backend.errors import NotFound
from backend.scheduling.models import Appointment, BookingPolicy
from backend.tenancy.context import Actor, Role


@dataclass(frozen=True)
class BookingRules:
    min_notice: timedelta
    horizon: timedelta
    cancellation_window: timedelta
    hold: timedelta

    @classmethod
    def of(cls, policy: BookingPolicy | None) -> BookingRules:
        policy = policy or BookingPolicy(tenant_id=uuid.UUID(int=0))
        return cls(
            min_notice=timedelta(minutes=policy.min_notice_minutes),
            horizon=timedelta(days=policy.horizon_days),
            cancellation_window=timedelta(hours=policy.cancellation_window_hours),
            hold=timedelta(minutes=policy.hold_minutes),
        )


def booking_rules(uow: UnitOfWork, clinic_id: uuid.UUID | None) -> BookingRules:
    """The clinic's override, else the practice default, else the built-in defaults."""
    policies = list(
        uow.session.exec(
            select(BookingPolicy).where(
                (col(BookingPolicy.clinic_id) == clinic_id) | col(BookingPolicy.clinic_id).is_(None)
            )
        )
    )
    return rules_at({p.clinic_id: BookingRules.of(p) for p in policies}, clinic_id)


def rules_at(by_clinic: Mapping[uuid.UUID | None, BookingRules], clinic_id: uuid.UUID | None) -> BookingRules:
    """The one precedence of booking rules: the clinic's override, else the practice default (key None), else the
    built-in defaults."""
    return by_clinic.get(clinic_id) or by_clinic.get(None) or BookingRules.of(None)


def can_see_appointment(actor: Actor, appointment: Appointment) -> bool:
    """A patient sees their own, a doctor their own schedule, staff of the practice everything."""
    if actor.role == Role.PATIENT:
        return appointment.patient_id is not None and appointment.patient_id == actor.patient_id
    if actor.role == Role.DOCTOR:
        return appointment.provider_id == actor.provider_id
    return actor.role in (Role.ADMIN, Role.SYSTEM)


def visible_appointment(actor: Actor, uow: UnitOfWork, appointment_id: uuid.UUID, *, lock: bool = False) -> Appointment:
    """Load an appointment the actor may see, or NotFound (the same for another tenant's or patient's)."""
    query = select(Appointment).where(Appointment.id == appointment_id)
    if lock:
        query = query.with_for_update()
    appointment = uow.session.exec(query).first()
    if appointment is None or not can_see_appointment(actor, appointment):
        raise NotFound("appointment")
    return appointment
