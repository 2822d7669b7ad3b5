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
from backend.errors import Code, Conflict, NotFound, ValidationFailed
from backend.identity.models import Patient, Provider, ProviderClinic
from backend.scheduling import cache
from backend.scheduling.models import Appointment, AppointmentStatus, AvailabilityRule
from backend.service import require_role, service_function
from backend.tenancy.context import Actor, Role
from backend.tenancy.models import Clinic, ClinicCreate, ClinicUpdate, Tenant
from backend.types import utcnow
from backend.waitlist import counters
from backend.waitlist.models import (
    ACTIVE_ENTRY_STATUSES,
    EntryStatus,
    WaitlistEntry,
    WaitlistOffer,
    WaitlistPolicy,
    target_key,
)
from backend.waitlist.offers import withdraw_live_offer


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
        # Archiving with patients still waiting there needs the admin's choice for them (archive_clinic).
        _refuse_without_waitlist_choice(uow, clinic, _active_entry_count(uow, clinic.id))
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


# -- archiving: what it affects, and the admin's choice for the waitlist --------------------------------------

WAITLIST_CHOICES = ("move", "close")
# Moving entries on archive is the admin's decision: the destination's waitlist limits do not refuse it.
_NO_LIMIT = 2**62


@dataclass(frozen=True)
class MoveTarget:
    """Another open clinic of the practice the waitlist can move to."""

    clinic_id: uuid.UUID
    name: str
    # Entries waiting for a provider who does not work there: they would wait for any provider of that clinic.
    entries_losing_provider: int


@dataclass(frozen=True)
class ArchivePreview:
    """What archiving a clinic affects, for the confirmation dialog (and GET .../archive-preview)."""

    clinic_id: uuid.UUID
    name: str
    archived: bool
    upcoming_appointments: int  # booked from now on: kept as they are
    active_entries: int  # waiting or offered: moved or closed, as the admin chooses
    offered_entries: int  # of those, with a live offer at this clinic: the offer is withdrawn either way
    move_targets: list[MoveTarget]


@dataclass(frozen=True)
class ArchiveResult:
    clinic: Clinic
    appointments_kept: int
    entries_moved: int
    entries_closed: int


def _active_entry_count(uow: UnitOfWork, clinic_id: uuid.UUID) -> int:
    query = (
        select(func.count())
        .select_from(WaitlistEntry)
        .where(WaitlistEntry.clinic_id == clinic_id, col(WaitlistEntry.status).in_(ACTIVE_ENTRY_STATUSES))
    )
    return int(uow.session.exec(query).one())


def _upcoming_count(uow: UnitOfWork, clinic_id: uuid.UUID) -> int:
    query = (
        select(func.count())
        .select_from(Appointment)
        .where(
            Appointment.clinic_id == clinic_id,
            Appointment.status == AppointmentStatus.BOOKED,
            Appointment.start_at >= utcnow(),
        )
    )
    return int(uow.session.exec(query).one())


def _refuse_without_waitlist_choice(uow: UnitOfWork, clinic: Clinic, active: int) -> None:
    if active:
        raise Conflict(
            f"{clinic.name} has {active} active waitlist entr{'y' if active == 1 else 'ies'}: choose to move them "
            "to another clinic or to close them (and notify the patients) when archiving it",
            field="waitlist",
            code=Code.CLINIC_ARCHIVE_CHOICE_REQUIRED,
            params={"active_entries": active, "upcoming_appointments": _upcoming_count(uow, clinic.id)},
        )


def _works_at(uow: UnitOfWork, clinic_id: uuid.UUID) -> set[uuid.UUID]:
    return set(uow.session.exec(select(ProviderClinic.provider_id).where(ProviderClinic.clinic_id == clinic_id)))


@service_function
def preview_archive(actor: Actor, uow: UnitOfWork, clinic_id: uuid.UUID) -> ArchivePreview:
    """What archiving the clinic would affect: upcoming appointments (kept) and active waitlist entries (admin)."""
    require_role(actor, Role.ADMIN)
    clinic = get_clinic(actor, uow, clinic_id)
    entries = list(
        uow.session.exec(
            select(WaitlistEntry).where(
                WaitlistEntry.clinic_id == clinic.id, col(WaitlistEntry.status).in_(ACTIVE_ENTRY_STATUSES)
            )
        )
    )
    targets = []
    for other in list_clinics(actor, uow):
        if other.id == clinic.id:
            continue
        there = _works_at(uow, other.id)
        losing = sum(1 for e in entries if e.provider_id is not None and e.provider_id not in there)
        targets.append(MoveTarget(clinic_id=other.id, name=other.name, entries_losing_provider=losing))
    return ArchivePreview(
        clinic_id=clinic.id,
        name=clinic.name,
        archived=clinic.archived_at is not None,
        upcoming_appointments=_upcoming_count(uow, clinic.id),
        active_entries=len(entries),
        offered_entries=sum(1 for e in entries if e.status == EntryStatus.OFFERED),
        move_targets=targets,
    )


def _entry_changed(uow: UnitOfWork, entry: WaitlistEntry, *, from_clinic_id: uuid.UUID | None = None) -> None:
    events.emit(
        uow,
        "waitlist.changed",
        entity_id=entry.id,
        clinic_id=entry.clinic_id,
        from_clinic_id=from_clinic_id,
        provider_id=entry.provider_id,
        patient_id=entry.patient_id,
        status=str(entry.status),
    )


def _withdraw_offer(actor: Actor, uow: UnitOfWork, entry: WaitlistEntry) -> None:
    """A live offer for a slot at the closing clinic is withdrawn (its hold released); the entry stays active."""
    if entry.status == EntryStatus.OFFERED:
        withdraw_live_offer(actor, uow, entry)
        uow.session.refresh(entry)


def _close_entry(actor: Actor, uow: UnitOfWork, entry: WaitlistEntry, clinic: Clinic, *, merged_into: Clinic | None
                 ) -> None:  # fmt: skip
    now = utcnow()
    counters.release(uow, entry)
    entry.status = EntryStatus.REMOVED
    entry.updated_at = now
    entry.version += 1
    uow.session.add(entry)
    merged = str(merged_into.id) if merged_into is not None else None
    record(actor, uow, action="waitlist.removed", entity_type="waitlist_entry", entity_id=entry.id, data={
        "patient_id": str(entry.patient_id), "by_role": str(actor.role), "reason": "clinic_archived",
        "clinic_id": str(clinic.id), "merged_into_clinic_id": merged})  # fmt: skip
    if merged_into is None:
        events.emit(uow, "waitlist.entry_closed", entity_id=entry.id, clinic_id=clinic.id,
                    provider_id=entry.provider_id, patient_id=entry.patient_id, reason="clinic_archived")  # fmt: skip
    else:  # the patient already waits for the same thing there: that entry is where they now wait
        events.emit(uow, "waitlist.entry_moved", entity_id=entry.id, clinic_id=merged_into.id,
                    from_clinic_id=clinic.id, provider_id=entry.provider_id, patient_id=entry.patient_id,
                    merged=True, reason="clinic_archived")  # fmt: skip
    _entry_changed(uow, entry)


def _move_entry(actor: Actor, uow: UnitOfWork, entry: WaitlistEntry, clinic: Clinic, target: Clinic,
                there: set[uuid.UUID]) -> None:  # fmt: skip
    """Move one active entry to `target`. When the patient already waits there for the same thing, this entry is
    closed instead: the one at `target` is where they now wait (and they are told so)."""
    provider_id = entry.provider_id if entry.provider_id in there else None
    key = target_key(target.id, provider_id, entry.specialty, entry.modality)
    duplicate = uow.session.exec(
        select(WaitlistEntry.id).where(
            WaitlistEntry.patient_id == entry.patient_id,
            WaitlistEntry.target_key == key,
            col(WaitlistEntry.status).in_(ACTIVE_ENTRY_STATUSES),
            WaitlistEntry.id != entry.id,
        )
    ).first()
    if duplicate is not None:
        _close_entry(actor, uow, entry, clinic, merged_into=target)
        return
    counters.release(uow, entry)  # the old clinic's (and provider's) counters, after commit
    counters.reserve(uow, clinic_id=target.id, provider_id=provider_id, provider_limit=_NO_LIMIT,
                     clinic_limit=_NO_LIMIT)  # fmt: skip
    dropped = entry.provider_id is not None and provider_id is None
    entry.clinic_id = target.id
    entry.provider_id = provider_id
    entry.timezone = target.timezone  # the preferred windows keep their wall-clock times, in the new clinic's zone
    entry.updated_at = utcnow()
    entry.version += 1
    uow.session.add(entry)
    record(actor, uow, action="waitlist.moved", entity_type="waitlist_entry", entity_id=entry.id, data={
        "patient_id": str(entry.patient_id), "by_role": str(actor.role), "reason": "clinic_archived",
        "from_clinic_id": str(clinic.id), "to_clinic_id": str(target.id),
        "provider_dropped": dropped})  # fmt: skip
    events.emit(uow, "waitlist.entry_moved", entity_id=entry.id, clinic_id=target.id, from_clinic_id=clinic.id,
                provider_id=entry.provider_id, patient_id=entry.patient_id, merged=False,
                reason="clinic_archived")  # fmt: skip
    _entry_changed(uow, entry, from_clinic_id=clinic.id)


@service_function
def archive_clinic(
    actor: Actor,
    uow: UnitOfWork,
    clinic_id: uuid.UUID,
    *,
    waitlist: str | None = None,
    move_to_clinic_id: uuid.UUID | None = None,
) -> ArchiveResult:
    """Archive a clinic (admin). Its upcoming appointments are kept. Its active waitlist entries are moved to
    another open clinic of the practice (`waitlist="move"`, `move_to_clinic_id`) or closed (`"close"`); either
    way their patients are notified and any live offer at the clinic is withdrawn. With active entries and no
    choice, the archive is refused (code clinic.archive_waitlist_choice_required) and nothing changes."""
    require_role(actor, Role.ADMIN)
    clinic = uow.session.exec(select(Clinic).where(Clinic.id == clinic_id).with_for_update()).first()
    if clinic is None:
        raise NotFound("clinic")
    target = get_clinic(actor, uow, move_to_clinic_id) if move_to_clinic_id is not None else None
    if waitlist is not None and waitlist not in WAITLIST_CHOICES:
        raise ValidationFailed("waitlist must be 'move' or 'close'", field="waitlist")
    if clinic.archived_at is not None:
        raise Conflict(f"{clinic.name} is already archived", code=Code.CLINIC_ALREADY_ARCHIVED)
    if waitlist == "close" and target is not None:
        raise ValidationFailed("closing the waitlist moves no entry: leave move_to_clinic_id out",
                               field="move_to_clinic_id", code=Code.CLINIC_ARCHIVE_TARGET_INVALID)  # fmt: skip
    if waitlist == "move":
        if target is None:
            raise ValidationFailed("choose the clinic the waitlist moves to", field="move_to_clinic_id",
                                   code=Code.CLINIC_ARCHIVE_TARGET_INVALID)  # fmt: skip
        if target.id == clinic.id or target.archived_at is not None:
            raise ValidationFailed("the waitlist can move only to another open clinic of the practice",
                                   field="move_to_clinic_id", code=Code.CLINIC_ARCHIVE_TARGET_INVALID)  # fmt: skip
    entries = list(
        uow.session.exec(
            select(WaitlistEntry)
            .where(WaitlistEntry.clinic_id == clinic.id, col(WaitlistEntry.status).in_(ACTIVE_ENTRY_STATUSES))
            .order_by(col(WaitlistEntry.created_at), col(WaitlistEntry.id))
            .with_for_update()
        )
    )
    if waitlist is None:
        _refuse_without_waitlist_choice(uow, clinic, len(entries))
    kept = _upcoming_count(uow, clinic.id)
    moved = closed = 0
    there = _works_at(uow, target.id) if target is not None else set()
    for entry in entries:
        _withdraw_offer(actor, uow, entry)
        if entry.status not in ACTIVE_ENTRY_STATUSES:  # cannot happen under the lock; never touch a closed entry
            continue
        if entry.status == EntryStatus.OFFERED:  # the offers engine leaves the status to the caller
            entry.status = EntryStatus.WAITING
        if waitlist == "move" and target is not None:
            _move_entry(actor, uow, entry, clinic, target, there)
            moved += 1
        else:
            _close_entry(actor, uow, entry, clinic, merged_into=None)
            closed += 1
    uow.flush()
    clinic.archived_at = utcnow()
    uow.session.add(clinic)
    uow.flush()
    record(actor, uow, action="clinic.archived", entity_type="clinic", entity_id=clinic.id, data={
        "upcoming_appointments_kept": kept, "entries_moved": moved, "entries_closed": closed,
        "waitlist": waitlist, "move_to_clinic_id": str(target.id) if target is not None else None})  # fmt: skip
    _forget_search_cache(uow, clinic.id)
    if target is not None:
        _forget_search_cache(uow, target.id)
    events.emit(uow, "clinic.changed", entity_id=clinic.id)
    return ArchiveResult(clinic=clinic, appointments_kept=kept, entries_moved=moved, entries_closed=closed)


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
