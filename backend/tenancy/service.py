"""Clinics of a practice: list, read, create, update, archive and delete."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from backend import events
from backend.audit.service import record
from backend.db import UnitOfWork
from backend.errors import Conflict, NotFound
from backend.identity.models import Patient, Provider, ProviderClinic
from backend.scheduling import cache
from backend.scheduling.models import Appointment, AppointmentStatus, AvailabilityRule
from backend.service import require_role, service_function
from backend.tenancy.context import Actor, Role
from backend.tenancy.models import Clinic, ClinicCreate, ClinicUpdate, Tenant
from backend.types import utcnow
from backend.waitlist.models import ACTIVE_ENTRY_STATUSES, WaitlistEntry, WaitlistOffer, WaitlistPolicy


@service_function
def get_tenant(actor: Actor, uow: UnitOfWork) -> Tenant:
    """Return the actor's own practice."""
    tenant = uow.session.get(Tenant, actor.tenant_id)
    if tenant is None:
        raise NotFound("practice")
    return tenant


@service_function
def list_clinics(actor: Actor, uow: UnitOfWork, *, include_archived: bool = False) -> list[Clinic]:
    """List the practice's clinics by name (every role may see them)."""
    query = select(Clinic).order_by(Clinic.name)
    if not include_archived:
        query = query.where(col(Clinic.archived_at).is_(None))
    return list(uow.session.exec(query))


@service_function
def get_clinic(actor: Actor, uow: UnitOfWork, clinic_id: uuid.UUID) -> Clinic:
    """Return one clinic of the practice, or NotFound (also for another practice's clinic)."""
    clinic = uow.session.get(Clinic, clinic_id)
    if clinic is None:
        raise NotFound("clinic")
    return clinic


def _name_taken(uow: UnitOfWork, name: str, *, except_id: uuid.UUID | None = None) -> bool:
    query = select(Clinic.id).where(func.lower(Clinic.name) == name.lower())
    if except_id is not None:
        query = query.where(Clinic.id != except_id)
    return uow.session.exec(query).first() is not None


def _forget_search_cache(uow: UnitOfWork, clinic_id: uuid.UUID) -> None:
    """After commit, drop the cached provider directory and the next free slots of the clinic's providers."""
    cache.invalidate_directory(uow)
    linked = select(ProviderClinic.provider_id).where(ProviderClinic.clinic_id == clinic_id)
    with_rules = select(AvailabilityRule.provider_id).where(AvailabilityRule.clinic_id == clinic_id)
    for provider_id in set(uow.session.exec(linked)) | set(uow.session.exec(with_rules)):
        cache.invalidate_provider(uow, provider_id)


@service_function
def create_clinic(actor: Actor, uow: UnitOfWork, data: ClinicCreate) -> Clinic:
    """Add a clinic to the practice (admin)."""
    require_role(actor, Role.ADMIN)
    if _name_taken(uow, data.name):
        raise Conflict(f"a clinic named {data.name!r} already exists", field="name")
    clinic = Clinic(tenant_id=actor.tenant_id, **data.model_dump())
    uow.session.add(clinic)
    try:
        uow.flush()
    except IntegrityError as exc:  # a concurrent create with the same name
        raise Conflict(f"a clinic named {data.name!r} already exists", field="name") from exc
    record(actor, uow, action="clinic.created", entity_type="clinic", entity_id=clinic.id)
    cache.invalidate_directory(uow)
    events.emit(uow, "clinic.changed", entity_id=clinic.id)
    return clinic


@service_function
def update_clinic(actor: Actor, uow: UnitOfWork, clinic_id: uuid.UUID, data: ClinicUpdate) -> Clinic:
    """Change a clinic's details, or archive / restore it (admin)."""
    require_role(actor, Role.ADMIN)
    clinic = get_clinic(actor, uow, clinic_id)
    changes = data.model_dump(exclude_unset=True)
    archived = changes.pop("archived", None)
    if "name" in changes and changes["name"] is not None:
        changes["name"] = changes["name"].strip()
        if _name_taken(uow, changes["name"], except_id=clinic.id):
            raise Conflict(f"a clinic named {changes['name']!r} already exists", field="name")
    changed = []
    for key, value in changes.items():
        if value is not None and getattr(clinic, key) != value:
            setattr(clinic, key, value)
            changed.append(key)
    if archived is True and clinic.archived_at is None:
        clinic.archived_at = utcnow()
        changed.append("archived")
    elif archived is False and clinic.archived_at is not None:
        clinic.archived_at = None
        changed.append("archived")
    if changed:
        uow.session.add(clinic)
        try:
            uow.flush()
        except IntegrityError as exc:  # a concurrent rename to the same name
            raise Conflict(f"a clinic named {clinic.name!r} already exists", field="name") from exc
        record(actor, uow, action="clinic.updated", entity_type="clinic", entity_id=clinic.id, data={"fields": changed})
        _forget_search_cache(uow, clinic.id)
        events.emit(uow, "clinic.changed", entity_id=clinic.id)
    return clinic


@service_function
def delete_clinic(actor: Actor, uow: UnitOfWork, clinic_id: uuid.UUID) -> None:
    """Delete a clinic that nothing depends on; one with appointments or waitlist entries must be archived."""
    require_role(actor, Role.ADMIN)
    clinic = get_clinic(actor, uow, clinic_id)
    appointments = uow.session.exec(
        select(func.count()).select_from(Appointment).where(Appointment.clinic_id == clinic.id)
    ).one()
    if appointments:
        raise Conflict(
            f"{clinic.name} still has {appointments} appointment(s) on record; "
            "archive the clinic instead of deleting it"
        )
    entries = uow.session.exec(
        select(func.count()).select_from(WaitlistEntry).where(WaitlistEntry.clinic_id == clinic.id)
    ).one()
    offers = uow.session.exec(
        select(func.count()).select_from(WaitlistOffer).where(WaitlistOffer.clinic_id == clinic.id)
    ).one()
    if entries or offers:
        raise Conflict(f"{clinic.name} still has waitlist entries; archive the clinic instead of deleting it")
    _forget_search_cache(uow, clinic.id)  # before the links and rules that name the providers go
    # Availability, provider links and its policy override only describe the clinic itself.
    for model in (AvailabilityRule, ProviderClinic, WaitlistPolicy):
        uow.session.execute(delete(model).where(col(model.clinic_id) == clinic.id))  # type: ignore[attr-defined]
    uow.session.execute(update(Patient).where(col(Patient.home_clinic_id) == clinic.id).values(home_clinic_id=None))
    uow.session.delete(clinic)
    uow.flush()
    record(actor, uow, action="clinic.deleted", entity_type="clinic", entity_id=clinic.id, data={"name": clinic.name})
    events.emit(uow, "clinic.changed", entity_id=clinic.id)


@dataclass(frozen=True)
class ClinicSummary:
    """One clinic's figures for the admin home."""

    clinic_id: uuid.UUID
    name: str
    timezone: str
    archived: bool
    providers: int
    patients: int
    upcoming_appointments: int
    waiting_entries: int


@service_function
def clinic_overview(actor: Actor, uow: UnitOfWork, *, include_archived: bool = True) -> list[ClinicSummary]:
    """Summarise every clinic of the practice for the admin home (admin)."""
    require_role(actor, Role.ADMIN)
    clinics = list_clinics(actor, uow, include_archived=include_archived)
    now = utcnow()

    def counts(query: Any) -> dict[uuid.UUID, int]:
        return {clinic_id: n for clinic_id, n in uow.session.exec(query)}

    providers = counts(select(ProviderClinic.clinic_id, func.count()).group_by(col(ProviderClinic.clinic_id)))
    patients = counts(
        select(Patient.home_clinic_id, func.count())
        .where(col(Patient.home_clinic_id).is_not(None))
        .group_by(col(Patient.home_clinic_id))
    )
    upcoming = counts(
        select(Appointment.clinic_id, func.count())
        .where(Appointment.start_at >= now, Appointment.status == AppointmentStatus.BOOKED)
        .group_by(col(Appointment.clinic_id))
    )
    waiting = counts(
        select(WaitlistEntry.clinic_id, func.count())
        .where(col(WaitlistEntry.status).in_(ACTIVE_ENTRY_STATUSES))
        .group_by(col(WaitlistEntry.clinic_id))
    )
    return [
        ClinicSummary(
            clinic_id=c.id,
            name=c.name,
            timezone=c.timezone,
            archived=c.archived_at is not None,
            providers=providers.get(c.id, 0),
            patients=patients.get(c.id, 0),
            upcoming_appointments=upcoming.get(c.id, 0),
            waiting_entries=waiting.get(c.id, 0),
        )
        for c in clinics
    ]


@dataclass(frozen=True)
class PracticeTotals:
    """Distinct counts across the practice (a provider of two clinics counts once)."""

    providers: int
    patients: int
    upcoming_appointments: int
    waiting_entries: int


@service_function
def practice_totals(actor: Actor, uow: UnitOfWork) -> PracticeTotals:
    """Count active providers, patients, upcoming appointments and active waitlist entries (admin)."""
    require_role(actor, Role.ADMIN)

    def count(query: Any) -> int:
        return int(uow.session.exec(query).one())

    return PracticeTotals(
        providers=count(select(func.count()).select_from(Provider).where(col(Provider.active).is_(True))),
        patients=count(select(func.count()).select_from(Patient)),
        upcoming_appointments=count(
            select(func.count())
            .select_from(Appointment)
            .where(Appointment.start_at >= utcnow(), Appointment.status == AppointmentStatus.BOOKED)
        ),
        waiting_entries=count(
            select(func.count()).select_from(WaitlistEntry).where(col(WaitlistEntry.status).in_(ACTIVE_ENTRY_STATUSES))
        ),
    )
