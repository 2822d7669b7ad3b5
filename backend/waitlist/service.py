"""Waitlist entries: listing in each role's own scope."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_
from sqlmodel import col, select

from backend.db import UnitOfWork
from backend.identity.models import Patient, Provider, ProviderClinic
from backend.service import service_function
from backend.tenancy.context import Actor, Role
from backend.tenancy.models import Clinic
from backend.waitlist.models import EntryStatus, WaitlistEntry


@dataclass(frozen=True)
class EntryView:
    id: uuid.UUID
    status: str
    urgency: int
    created_at: datetime
    patient_id: uuid.UUID
    patient_name: str
    provider_id: uuid.UUID | None
    provider_name: str
    clinic_id: uuid.UUID
    clinic_name: str
    timezone: str
    preferred_windows: list[dict[str, Any]]


@service_function
def list_entries(
    actor: Actor,
    uow: UnitOfWork,
    *,
    clinic_id: uuid.UUID | None = None,
    provider_id: uuid.UUID | None = None,
    status: EntryStatus | None = None,
    limit: int = 200,
) -> list[EntryView]:
    """List waitlist entries: a patient's own, those a doctor can serve, or all of the practice."""
    query = (
        select(WaitlistEntry, Patient, Clinic, Provider)
        .join(Patient, col(Patient.id) == WaitlistEntry.patient_id)
        .join(Clinic, col(Clinic.id) == WaitlistEntry.clinic_id)
        .outerjoin(Provider, col(Provider.id) == WaitlistEntry.provider_id)
    )
    if actor.role == Role.PATIENT:
        query = query.where(WaitlistEntry.patient_id == actor.patient_id)
    elif actor.role == Role.DOCTOR:
        # Entries for this doctor, or for "any provider" at a clinic where this doctor works.
        works_at = select(ProviderClinic.clinic_id).where(ProviderClinic.provider_id == actor.provider_id)
        query = query.where(
            or_(
                col(WaitlistEntry.provider_id) == actor.provider_id,
                and_(col(WaitlistEntry.provider_id).is_(None), col(WaitlistEntry.clinic_id).in_(works_at)),
            )
        )
    if clinic_id is not None:
        query = query.where(WaitlistEntry.clinic_id == clinic_id)
    if provider_id is not None:
        query = query.where(WaitlistEntry.provider_id == provider_id)
    if status is not None:
        query = query.where(WaitlistEntry.status == status)
    query = query.order_by(col(WaitlistEntry.urgency).desc(), col(WaitlistEntry.created_at))
    query = query.limit(max(1, min(limit, 1000)))
    return [
        EntryView(
            id=entry.id,
            status=str(entry.status),
            urgency=entry.urgency,
            created_at=entry.created_at,
            patient_id=patient.id,
            patient_name=patient.full_name,
            provider_id=provider.id if provider else None,
            provider_name=provider.full_name if provider else "Any provider",
            clinic_id=clinic.id,
            clinic_name=clinic.name,
            timezone=entry.timezone,
            preferred_windows=list(entry.preferred_windows),
        )
        for entry, patient, clinic, provider in uow.session.exec(query)
    ]
