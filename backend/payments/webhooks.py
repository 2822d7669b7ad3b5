"""Stripe's webhook events, reconciled into the ledger. The route (backend.api.routes.payments) has verified the
signature; here each event is applied idempotently: the same event twice (Stripe retries) changes nothing more.

    payment_intent.succeeded       -> the row succeeded (unless refunded or waived since)
    payment_intent.payment_failed  -> a row still 'requested' failed (a succeeded one stays)
    charge.refunded                -> the row refunded
    setup_intent.succeeded         -> the card is saved for the patient the SetupIntent names

The row is found by the ids we put in the metadata (tenant, payment) and must carry the same PaymentIntent id
once it knows one; the practice's work runs in its own scope, under row-level security.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlmodel import col, select

from backend.audit.service import record
from backend.db import UnitOfWork
from backend.payments.models import Payment, PaymentStatus
from backend.tenancy.context import Actor
from backend.types import utcnow

HANDLED = ("payment_intent.succeeded", "payment_intent.payment_failed", "charge.refunded", "setup_intent.succeeded")


def _uuid(value: object) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def _payment_for(uow: UnitOfWork, payment_id: uuid.UUID | None, intent_id: str) -> Payment | None:
    query = select(Payment).with_for_update()
    if payment_id is not None:
        row = uow.session.exec(query.where(col(Payment.id) == payment_id)).first()
        if row is not None and row.provider_payment_intent_id not in (None, intent_id):
            return None  # a later attempt's row: an older attempt's event does not settle it
        return row
    return uow.session.exec(query.where(col(Payment.provider_payment_intent_id) == intent_id)).first()


def apply_event(event: dict[str, Any]) -> str:
    """Apply one verified event; returns what happened ('ignored', 'not ours', 'unchanged', or the new status)."""
    kind = str(event.get("type", ""))
    if kind not in HANDLED:
        return "ignored"
    obj = (event.get("data") or {}).get("object") or {}
    metadata = obj.get("metadata") or {}
    tenant_id = _uuid(metadata.get("tenant_id"))
    if kind == "charge.refunded":
        intent_id = str(obj.get("payment_intent") or "")
    else:
        intent_id = str(obj.get("id") or "")
    if tenant_id is None:
        return "not ours"
    actor = Actor.system(tenant_id)
    if kind == "setup_intent.succeeded":
        from backend.payments.service import save_card

        with UnitOfWork(actor) as uow:
            saved = save_card(uow, actor, intent_id)
            uow.commit()
        return "card saved" if saved is not None else "unchanged"
    with UnitOfWork(actor) as uow:
        row = _payment_for(uow, _uuid(metadata.get("payment_id")), intent_id)
        if row is None:
            return "not ours"
        now = utcnow()
        before = row.status
        if kind == "payment_intent.succeeded" and row.status in (PaymentStatus.REQUESTED, PaymentStatus.FAILED):
            row.status, row.settled_at, row.next_attempt_at, row.last_error = PaymentStatus.SUCCEEDED, now, None, ""
            charge = obj.get("latest_charge")
            row.provider_charge_id = str(charge) if isinstance(charge, str) else row.provider_charge_id
        elif kind == "payment_intent.payment_failed" and row.status == PaymentStatus.REQUESTED:
            error = (obj.get("last_payment_error") or {}).get("code") or "payment_failed"
            row.status, row.last_error = PaymentStatus.FAILED, str(error)[:300]
        elif kind == "charge.refunded" and row.status == PaymentStatus.SUCCEEDED:
            row.status, row.settled_at = PaymentStatus.REFUNDED, now
        else:
            return "unchanged"
        row.provider_payment_intent_id = row.provider_payment_intent_id or intent_id or None
        row.lease_until = None
        row.updated_at = now
        uow.session.add(row)
        record(actor, uow, action="payments.webhook", entity_type="payment", entity_id=row.id,
               data={"event": kind, "from": str(before), "to": str(row.status)})  # fmt: skip
        uow.commit()
        return str(row.status)
