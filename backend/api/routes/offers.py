"""Waitlist offers: promote and invite (staff), accept and decline (the patient), list."""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter, status
from pydantic import BaseModel, Field

from backend.api.deps import ActorDep, UowDep
from backend.api.routes.appointments import AppointmentOut
from backend.types import ApiDateTime
from backend.waitlist import offers
from backend.waitlist.models import WaitlistOffer

router = APIRouter(prefix="/api/v1", tags=["offers"])


class OfferOut(BaseModel):
    id: uuid.UUID
    entry_id: uuid.UUID
    appointment_id: uuid.UUID | None
    provider_id: uuid.UUID
    clinic_id: uuid.UUID
    slot_start: datetime
    slot_end: datetime
    status: str
    kind: str
    score: float
    reasons: list[str]
    expires_at: datetime
    responded_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, offer: WaitlistOffer) -> OfferOut:
        return cls.model_validate(offer, from_attributes=True)


class InviteRequest(BaseModel):
    start: ApiDateTime = Field(description="The slot's start, with a time zone offset")
    provider_id: uuid.UUID | None = Field(default=None, description="Default: the entry's provider (or yours)")


@router.post("/waitlists/{entry_id}/promote", response_model=OfferOut, status_code=status.HTTP_201_CREATED)
def promote(entry_id: uuid.UUID, actor: ActorDep, uow: UowDep) -> OfferOut:
    """Offer this entry its best free slot now: 201, 409 when it already has a live offer, 422 when none fits."""
    offer = offers.promote_entry(actor, uow, entry_id)
    uow.commit()
    return OfferOut.of(offer)


@router.post("/waitlists/{entry_id}/invite", response_model=OfferOut, status_code=status.HTTP_201_CREATED)
def invite(entry_id: uuid.UUID, body: InviteRequest, actor: ActorDep, uow: UowDep) -> OfferOut:
    """Offer this entry a chosen free slot: 201, 409 when the slot is taken, 422 when there is no such slot."""
    offer = offers.invite_entry(actor, uow, entry_id, start=body.start, provider_id=body.provider_id)
    uow.commit()
    return OfferOut.of(offer)


@router.post("/offers/{offer_id}/accept", response_model=AppointmentOut)
def accept(offer_id: uuid.UUID, actor: ActorDep, uow: UowDep) -> AppointmentOut:
    """Take the offered slot (owner patient): the booked appointment, or 409 when the offer is no longer open."""
    appointment = offers.accept_offer(actor, uow, offer_id)
    uow.commit()
    return AppointmentOut.of(appointment)


@router.post("/offers/{offer_id}/decline", response_model=OfferOut)
def decline(offer_id: uuid.UUID, actor: ActorDep, uow: UowDep) -> OfferOut:
    """Turn the offer down (owner patient); the slot goes to the next patient."""
    offer = offers.decline_offer(actor, uow, offer_id)
    uow.commit()
    return OfferOut.of(offer)


@router.get("/offers", response_model=list[OfferOut])
def get_offers(actor: ActorDep, uow: UowDep, entry_id: uuid.UUID | None = None) -> list[OfferOut]:
    """A patient's own offers, or the practice's for staff; newest first."""
    return [OfferOut.of(o) for o in offers.list_offers(actor, uow, entry_id=entry_id)]
