"""Clinics CRUD (admin writes; every role reads)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status

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


@router.delete("/{clinic_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_clinic(clinic_id: uuid.UUID, actor: ActorDep, uow: UowDep) -> Response:
    service.delete_clinic(actor, uow, clinic_id)
    uow.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
