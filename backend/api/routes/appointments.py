"""Slots, booking, holds, cancellation, rescheduling and attendance."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Response, status
from pydantic import BaseModel, Field, StrictBool

from backend.api.deps import ActorDep, UowDep
from backend.api.ratelimit import rate_limit
from backend.api.responses import JsonOf
from backend.audit.service import record_access
from backend.payments.service import check_card_to_book
from backend.ratelimit import BOOKING, SLOTS
from backend.scheduling import booking
from backend.scheduling.models import Appointment
from backend.scheduling.policy import visible_appointment
from backend.scheduling.service import list_slots
from backend.types import ApiDateTime, ApiText, Int64

router = APIRouter(prefix="/api/v1", tags=["appointments"])

Modality = Literal["in_person", "telehealth"]


class SlotOut(BaseModel):
    start: datetime
    end: datetime
    clinic_id: uuid.UUID
    modality: str
    timezone: str
    status: Literal["free", "held", "booked"]


class AppointmentOut(BaseModel):
    id: uuid.UUID
    provider_id: uuid.UUID
    patient_id: uuid.UUID | None
    clinic_id: uuid.UUID
    start_at: datetime
    end_at: datetime
    modality: str
    status: str
    hold_expires_at: datetime | None
    version: int
    series_id: uuid.UUID | None

    @classmethod
    def of(cls, a: Appointment) -> AppointmentOut:
        return cls.model_validate(a, from_attributes=True)


class BookRequest(BaseModel):
    provider_id: uuid.UUID
    start: ApiDateTime = Field(description="The slot's start, with a time zone offset")
    modality: Modality | None = None
    patient_id: uuid.UUID | None = Field(default=None, description="Required when an admin books")


class CancelRequest(BaseModel):
    reason: ApiText = Field(default="", max_length=500)


class RescheduleRequest(BaseModel):
    start: ApiDateTime
    confirm_change: StrictBool = Field(
        default=False,
        description="Required (true) when the new slot is at another clinic (time zone) or of another modality "
        "than the appointment; without it such a move is refused with 422 code reschedule.change_unconfirmed",
    )


class AttendanceRequest(BaseModel):
    outcome: Literal["completed", "no_show"]


class ConfirmRequest(BaseModel):
    version: Int64 = Field(ge=1)


_SLOTS = JsonOf(list[SlotOut])
_APPOINTMENT = JsonOf(AppointmentOut)


@router.get("/providers/{provider_id}/slots", response_model=list[SlotOut], dependencies=[rate_limit(SLOTS)])
def get_slots(
    provider_id: uuid.UUID,
    start: ApiDateTime,
    end: ApiDateTime,
    actor: ActorDep,
    uow: UowDep,
    include_taken: bool = True,
) -> Response:
    """A provider's slots between start and end (at most 31 days), each free, held or booked."""
    slots = list_slots(actor, uow, provider_id, start=start, end=end, include_taken=include_taken)
    return _SLOTS.response([
        SlotOut(start=s.start, end=s.end, clinic_id=s.clinic_id, modality=s.modality, timezone=s.timezone,
                status=s.status)  # type: ignore[arg-type]
        for s in slots
    ])  # fmt: skip


@router.post(
    "/appointments",
    response_model=AppointmentOut,
    status_code=status.HTTP_201_CREATED,
    dependencies=[rate_limit(BOOKING)],
)
def book(
    body: BookRequest,
    actor: ActorDep,
    uow: UowDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=100)] = None,
) -> Response:
    """Book a free slot: 201, or 409 when it was taken. A retried request with the same Idempotency-Key
    returns the first booking (header Idempotent-Replayed: true)."""
    result = booking.book_appointment(
        actor,
        uow,
        provider_id=body.provider_id,
        start=body.start,
        modality=body.modality,
        patient_id=body.patient_id,
        idempotency_key=idempotency_key,
    )
    check_card_to_book(actor, uow, clinic_id=result.appointment.clinic_id)  # the fee policy's card on file
    uow.commit()
    headers = {"Idempotent-Replayed": "true"} if result.replayed else None
    return _APPOINTMENT.response(AppointmentOut.of(result.appointment), status_code=201, headers=headers)


@router.get("/appointments/{appointment_id}", response_model=AppointmentOut)
def get_appointment(appointment_id: uuid.UUID, actor: ActorDep, uow: UowDep) -> AppointmentOut:
    appointment = visible_appointment(actor, uow, appointment_id)
    record_access(actor, uow, action="appointments.get", patient_ids=[appointment.patient_id])
    return AppointmentOut.of(appointment)


@router.post("/appointments/{appointment_id}/cancel", response_model=AppointmentOut)
def cancel(
    appointment_id: uuid.UUID, actor: ActorDep, uow: UowDep, body: CancelRequest | None = None
) -> AppointmentOut:
    appointment = booking.cancel_appointment(actor, uow, appointment_id, reason=(body or CancelRequest()).reason)
    uow.commit()
    return AppointmentOut.of(appointment)


@router.post("/appointments/{appointment_id}/reschedule", response_model=AppointmentOut)
def reschedule(appointment_id: uuid.UUID, body: RescheduleRequest, actor: ActorDep, uow: UowDep) -> AppointmentOut:
    """Move to another free slot of the same provider; the old slot is kept unless the new one is booked.
    A move to another clinic, time zone or modality needs `confirm_change: true` (else 422, nothing changes)."""
    appointment = booking.reschedule_appointment(
        actor, uow, appointment_id, new_start=body.start, confirm_change=body.confirm_change
    )
    uow.commit()
    return AppointmentOut.of(appointment)


@router.post("/appointments/{appointment_id}/attendance", response_model=AppointmentOut)
def attendance(appointment_id: uuid.UUID, body: AttendanceRequest, actor: ActorDep, uow: UowDep) -> AppointmentOut:
    appointment = booking.mark_attendance(actor, uow, appointment_id, outcome=body.outcome)
    uow.commit()
    return AppointmentOut.of(appointment)


@router.post(
    "/holds", response_model=AppointmentOut, status_code=status.HTTP_201_CREATED, dependencies=[rate_limit(BOOKING)]
)
def hold(body: BookRequest, actor: ActorDep, uow: UowDep) -> AppointmentOut:
    """Hold a free slot while the patient confirms (expires after the practice's hold minutes)."""
    held = booking.hold_slot(
        actor, uow, provider_id=body.provider_id, start=body.start, modality=body.modality, patient_id=body.patient_id
    )
    check_card_to_book(actor, uow, clinic_id=held.clinic_id)  # the fee policy's card on file
    uow.commit()
    return AppointmentOut.of(held)


@router.post("/holds/{hold_id}/confirm", response_model=AppointmentOut, dependencies=[rate_limit(BOOKING)])
def confirm(hold_id: uuid.UUID, body: ConfirmRequest, actor: ActorDep, uow: UowDep) -> AppointmentOut:
    appointment = booking.confirm_hold(actor, uow, hold_id, version=body.version)
    uow.commit()
    return AppointmentOut.of(appointment)


@router.delete("/holds/{hold_id}", status_code=status.HTTP_204_NO_CONTENT)
def release(hold_id: uuid.UUID, actor: ActorDep, uow: UowDep) -> Response:
    booking.release_hold(actor, uow, hold_id)
    uow.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
