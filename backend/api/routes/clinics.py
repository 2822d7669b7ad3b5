"""Clinics CRUD (admin writes; every role reads)."""

from __future__ import annotations

import uuid
from typing import Literal

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, Field

from backend.api.deps import ActorDep, UowDep
from backend.tenancy import service
from backend.tenancy.models import ClinicCreate, ClinicPublic, ClinicUpdate

router = APIRouter(prefix="/api/v1/clinics", tags=["clinics"])


@router.get("", response_model=list[ClinicPublic])
def list_clinics(actor: ActorDep, uow: UowDep, include_archived: bool = False) -> list[ClinicPublic]:
    return [ClinicPublic.of(c) for c in service.list_clinics(actor, uow, include_archived=include_archived)]


@router.post("", response_model=ClinicPublic, status_code=status.HTTP_201_CREATED)
def create_clinic(body: ClinicCreate, actor: ActorDep, uow: UowDep) -> ClinicPublic:
    clinic = service.create_clinic(actor, uow, body)
    uow.commit()
    return ClinicPublic.of(clinic)


@router.get("/{clinic_id}", response_model=ClinicPublic)
def get_clinic(clinic_id: uuid.UUID, actor: ActorDep, uow: UowDep) -> ClinicPublic:
    return ClinicPublic.of(service.get_clinic(actor, uow, clinic_id))


@router.patch("/{clinic_id}", response_model=ClinicPublic)
def update_clinic(clinic_id: uuid.UUID, body: ClinicUpdate, actor: ActorDep, uow: UowDep) -> ClinicPublic:
    clinic = service.update_clinic(actor, uow, clinic_id, body)
    uow.commit()
    return ClinicPublic.of(clinic)


class MoveTargetOut(BaseModel):
    clinic_id: uuid.UUID
    name: str
    entries_losing_provider: int = Field(
        description="Entries waiting for a provider who does not work there: they would wait for any provider there"
    )


class ArchivePreviewOut(BaseModel):
    clinic_id: uuid.UUID
    name: str
    archived: bool
    upcoming_appointments: int = Field(description="Booked from now on: kept as they are")
    active_entries: int = Field(description="Waiting or offered: moved or closed, as the admin chooses")
    offered_entries: int = Field(description="Of those, with a live offer at this clinic: withdrawn either way")
    move_targets: list[MoveTargetOut]


class ArchiveIn(BaseModel):
    waitlist: Literal["move", "close"] | None = Field(
        default=None,
        description="What happens to the clinic's active waitlist entries: required when it has any",
    )
    move_to_clinic_id: uuid.UUID | None = Field(default=None, description="With waitlist=move: another open clinic")


class ArchiveOut(BaseModel):
    clinic: ClinicPublic
    appointments_kept: int
    entries_moved: int
    entries_closed: int


@router.get("/{clinic_id}/archive-preview", response_model=ArchivePreviewOut)
def archive_preview(clinic_id: uuid.UUID, actor: ActorDep, uow: UowDep) -> ArchivePreviewOut:
    """What archiving the clinic would affect (admin)."""
    preview = service.preview_archive(actor, uow, clinic_id)
    return ArchivePreviewOut(
        clinic_id=preview.clinic_id,
        name=preview.name,
        archived=preview.archived,
        upcoming_appointments=preview.upcoming_appointments,
        active_entries=preview.active_entries,
        offered_entries=preview.offered_entries,
        move_targets=[MoveTargetOut(**vars(t)) for t in preview.move_targets],
    )


@router.post("/{clinic_id}/archive", response_model=ArchiveOut)
def archive_clinic(clinic_id: uuid.UUID, body: ArchiveIn, actor: ActorDep, uow: UowDep) -> ArchiveOut:
    """Archive the clinic (admin): upcoming appointments are kept; active waitlist entries are moved to another
    open clinic or closed, the patients notified. With active entries and no choice: 409
    clinic.archive_waitlist_choice_required, nothing changed."""
    result = service.archive_clinic(
        actor, uow, clinic_id, waitlist=body.waitlist, move_to_clinic_id=body.move_to_clinic_id
    )
    uow.commit()
    return ArchiveOut(
        clinic=ClinicPublic.of(result.clinic),
        appointments_kept=result.appointments_kept,
        entries_moved=result.entries_moved,
        entries_closed=result.entries_closed,
    )


@router.delete("/{clinic_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_clinic(clinic_id: uuid.UUID, actor: ActorDep, uow: UowDep) -> Response:
    service.delete_clinic(actor, uow, clinic_id)
    uow.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
