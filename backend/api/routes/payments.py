"""Payments: the fee policy, cards on file, the ledger (list, CSV export, waive) and Stripe's signed webhook.

Amounts are integer minor units (cents) with a currency, never floats. No card number is ever accepted here: a card
is saved in the browser against a SetupIntent, and only its confirmation (the SetupIntent id) comes back.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Annotated, Literal

import stripe
from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from backend.api.deps import ActorDep, UowDep
from backend.api.ratelimit import rate_limit
from backend.errors import DomainError, PermissionDenied
from backend.payments import service, webhooks
from backend.payments.service import CardView, FeePolicyView, PaymentFilters, PaymentView
from backend.ratelimit import WEBHOOKS
from backend.settings import get_settings
from backend.types import ApiDateTime, ApiText, Int64

router = APIRouter(prefix="/api/v1", tags=["payments"])
webhook_router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"], dependencies=[rate_limit(WEBHOOKS)])
logger = logging.getLogger(__name__)

Amount = Annotated[StrictInt, Field(ge=0, le=service.MAX_AMOUNT_MINOR, description="Minor units (cents)")]
StatusFilter = Literal["requested", "succeeded", "failed", "refunded", "waived"]
KindFilter = Literal["copay", "self_pay", "late_cancel_fee", "no_show_fee"]


class FeePolicyOut(BaseModel):
    id: uuid.UUID | None
    clinic_id: uuid.UUID | None
    source: Literal["clinic", "practice", "none"]
    currency: str
    self_pay_minor: int
    provider_prices: dict[str, int]
    copay_enabled: bool
    copay_minor: int
    late_cancel_window_minutes: int
    late_cancel_fee_minor: int
    no_show_fee_minor: int
    card_required: bool
    max_charge_attempts: int
    policy_text: str
    version: int
    updated_at: datetime | None
    accepted_at: datetime | None

    @classmethod
    def of(cls, view: FeePolicyView) -> FeePolicyOut:
        return cls.model_validate(view, from_attributes=True)


class FeePolicyIn(BaseModel):
    """PUT /payments/policy: the fields to change (any subset). A change of terms raises the version."""

    model_config = ConfigDict(extra="forbid")

    currency: Literal["usd", "eur", "gbp", "cad", "aud", "chf", "nzd"] | None = None
    self_pay_minor: Amount | None = None
    provider_prices: dict[uuid.UUID, Amount] | None = Field(default=None, max_length=500)
    copay_enabled: StrictBool | None = None
    copay_minor: Amount | None = None
    late_cancel_window_minutes: Annotated[StrictInt, Field(ge=0, le=10_080)] | None = None
    late_cancel_fee_minor: Amount | None = None
    no_show_fee_minor: Amount | None = None
    card_required: StrictBool | None = None
    max_charge_attempts: Annotated[StrictInt, Field(ge=1, le=5)] | None = None
    policy_text: Annotated[StrictStr, Field(max_length=service.MAX_POLICY_CHARS)] | None = None


class AcceptIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Int64 = Field(ge=1, description="The version shown to the patient")


class CardOut(BaseModel):
    id: uuid.UUID
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    created_at: datetime

    @classmethod
    def of(cls, view: CardView) -> CardOut:
        return cls.model_validate(view, from_attributes=True)


class CardSetupOut(BaseModel):
    mode: Literal["fake", "stripe"]
    setup_intent_id: str
    client_secret: str
    publishable_key: str | None


class ConfirmCardIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    setup_intent_id: Annotated[StrictStr, Field(min_length=5, max_length=120, pattern=r"^seti_[A-Za-z0-9_]+$")]


class PaymentOut(BaseModel):
    id: uuid.UUID
    patient_id: uuid.UUID
    patient_name: str
    appointment_id: uuid.UUID | None
    appointment_start: datetime | None
    appointment_timezone: str
    kind: str
    status: str
    amount_minor: int
    currency: str
    attempt: int
    last_error: str
    waive_reason: str
    created_at: datetime
    settled_at: datetime | None

    @classmethod
    def of(cls, view: PaymentView) -> PaymentOut:
        return cls.model_validate(view, from_attributes=True)


class WaiveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: ApiText = Field(default="", max_length=300)


def _filters(
    status: StatusFilter | None = None,
    kind: KindFilter | None = None,
    patient_id: uuid.UUID | None = None,
    since: ApiDateTime | None = None,
    until: ApiDateTime | None = None,
    limit: int = 100,
) -> PaymentFilters:
    return PaymentFilters(status=status, kind=kind, patient_id=patient_id, since=since, until=until, limit=limit)


@router.get("/payments/policy", response_model=FeePolicyOut)
def get_policy(
    actor: ActorDep, uow: UowDep, clinic_id: uuid.UUID | None = None, exact: StrictBool = False
) -> FeePolicyOut:
    """The fee policy that applies at a clinic (a patient: their home clinic by default; with whether they accepted
    its current version). `exact` (admin screens): the clinic's own override or else the practice's row."""
    return FeePolicyOut.of(service.get_fee_policy(actor, uow, clinic_id=clinic_id, exact=exact))


@router.put("/payments/policy", response_model=FeePolicyOut)
def put_policy(actor: ActorDep, uow: UowDep, body: FeePolicyIn, clinic_id: uuid.UUID | None = None) -> FeePolicyOut:
    """Set the practice's fee policy, or a clinic's override with `clinic_id` (admin, audited)."""
    changes = body.model_dump(exclude_none=True)
    if "provider_prices" in changes:
        changes["provider_prices"] = {str(k): v for k, v in changes["provider_prices"].items()}
    view = service.update_fee_policy(actor, uow, clinic_id=clinic_id, changes=changes)
    uow.commit()
    return FeePolicyOut.of(view)


@router.post("/payments/policy/{policy_id}/accept", response_model=FeePolicyOut)
def accept_policy(actor: ActorDep, uow: UowDep, policy_id: uuid.UUID, body: AcceptIn) -> FeePolicyOut:
    """The patient accepts the version of the fee policy they were shown (recorded, audited)."""
    view = service.accept_fee_policy(actor, uow, policy_id=policy_id, version=body.version)
    uow.commit()
    return FeePolicyOut.of(view)


@router.get("/payments/methods", response_model=list[CardOut])
def my_cards(actor: ActorDep, uow: UowDep) -> list[CardOut]:
    """The patient's card on file (brand and last four digits only)."""
    return [CardOut.of(card) for card in service.list_payment_methods(actor, uow)]


@router.post("/payments/methods/setup", response_model=CardSetupOut)
def setup_card(actor: ActorDep, uow: UowDep) -> CardSetupOut:
    """Begin saving a card: a SetupIntent for the browser to confirm (Stripe.js), or a fake one in fake mode."""
    setup = service.start_card_setup(actor, uow)
    uow.commit()
    return CardSetupOut(
        mode=setup.mode,
        setup_intent_id=setup.setup_intent_id,  # type: ignore[arg-type]
        client_secret=setup.client_secret,
        publishable_key=setup.publishable_key,
    )


@router.post("/payments/methods/confirm", response_model=CardOut)
def confirm_card(actor: ActorDep, uow: UowDep, body: ConfirmCardIn) -> CardOut:
    """Keep the card a confirmed SetupIntent saved (it replaces the previous card on file)."""
    view = service.confirm_card_setup(actor, uow, setup_intent_id=body.setup_intent_id)
    uow.commit()
    return CardOut.of(view)


@router.get("/payments", response_model=list[PaymentOut])
def list_payments(
    actor: ActorDep,
    uow: UowDep,
    status: StatusFilter | None = None,
    kind: KindFilter | None = None,
    patient_id: uuid.UUID | None = None,
    since: ApiDateTime | None = None,
    until: ApiDateTime | None = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_LIST)] = 100,
) -> list[PaymentOut]:
    """Charges and fees, newest first: a patient their own, a doctor their appointments', the admin all."""
    filters = _filters(status, kind, patient_id, since, until, limit)
    views = service.list_payments(actor, uow, filters)
    uow.commit()  # the access record
    return [PaymentOut.of(v) for v in views]


@router.get("/payments/export.csv", response_class=Response)
def export_payments(
    actor: ActorDep,
    uow: UowDep,
    status: StatusFilter | None = None,
    kind: KindFilter | None = None,
    patient_id: uuid.UUID | None = None,
    since: ApiDateTime | None = None,
    until: ApiDateTime | None = None,
) -> Response:
    """The filtered ledger as CSV (admin); the export is recorded as an access."""
    body = service.export_payments_csv(actor, uow, _filters(status, kind, patient_id, since, until))
    uow.commit()
    return Response(
        content=body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="payments.csv"'},
    )


@router.post("/payments/{payment_id}/waive", response_model=PaymentOut)
def waive(actor: ActorDep, uow: UowDep, payment_id: uuid.UUID, body: WaiveIn) -> PaymentOut:
    """Waive a fee not charged yet (doctor for their appointments, admin; audited)."""
    view = service.waive_payment(actor, uow, payment_id, reason=body.reason)
    uow.commit()
    return PaymentOut.of(view)


@router.post("/payments/{payment_id}/refund", response_model=PaymentOut)
def refund(actor: ActorDep, uow: UowDep, payment_id: uuid.UUID) -> PaymentOut:
    """Refund a paid charge in full (admin; audited; one refund however often it is asked)."""
    view = service.refund_payment(actor, uow, payment_id)
    uow.commit()
    return PaymentOut.of(view)


class InvalidSignature(DomainError):
    status_code = 400
    code = "signature_invalid"


@webhook_router.post("/stripe")
async def stripe_webhook(request: Request) -> dict[str, str]:
    """Stripe's signed webhook (Stripe-Signature, STRIPE_WEBHOOK_SECRET): a forged or stale one is refused with 400
    and changes nothing; a verified one reconciles the ledger (idempotently: Stripe retries)."""
    secret = get_settings().stripe_webhook_secret
    if not secret:
        raise PermissionDenied("the Stripe webhook is not configured")
    payload = await request.body()
    try:
        event = stripe.Webhook.construct_event(payload, request.headers.get("Stripe-Signature", ""), secret)
    except (ValueError, stripe.SignatureVerificationError) as exc:
        raise InvalidSignature("invalid Stripe signature") from exc
    outcome = await run_in_threadpool(webhooks.apply_event, event.to_dict())
    return {"outcome": outcome}
