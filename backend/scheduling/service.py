"""Appointments: listing in each role's own scope."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import col, select

from backend.db import UnitOfWork
from backend.identity.models import Patient, Provider
from backend.scheduling.models import ACTIVE_APPOINTMENT_STATUSES, Appointment, AppointmentStatus
from backend.service import service_function
from backend.tenancy.context import Actor, Role
from backend.tenancy.models import Clinic


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
    query = query.order_by(col(Appointment.start_at)).limit(max(1, min(limit, 1000)))
    return [
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
