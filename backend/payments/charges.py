"""Charging a ledger row, at most once: claim with a lease, ask the gateway with the row's idempotency key, record.

    requested --claim (lease)--> gateway.charge(key) --> succeeded | failed (retried while the policy allows)
                                                    \\-> pending (the webhook settles it)

A worker that dies between the request and its result leaves the row 'requested' with a lease that runs out; the
sweep claims it again and asks with the SAME key, so the gateway answers with the charge it already made. A
declined charge is tried again (a new attempt, a new key) after RETRY_DELAY, at most the policy's
max_charge_attempts in all. Staff see failed rows and may waive them (backend.payments.service).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlmodel import col, or_, select

from backend.audit.service import record
from backend.db import UnitOfWork
from backend.payments.gateway import ChargeResult, get_gateway
from backend.payments.models import FeePolicy, Payment, PaymentMethod, PaymentStatus
from backend.settings import get_settings
from backend.tenancy.context import Actor
from backend.types import utcnow

logger = logging.getLogger(__name__)

RETRY_DELAY = timedelta(days=1)
SWEEP_BATCH = 50


@dataclass(frozen=True)
class Claim:
    tenant_id: uuid.UUID
    payment_id: uuid.UUID
    key: str
    amount_minor: int
    currency: str
    customer_id: str
    method_id: str


def idempotency_key(payment_id: uuid.UUID, attempt: int) -> str:
    return f"payment:{payment_id}:{attempt}"


def _claim(tenant_id: uuid.UUID, payment_id: uuid.UUID) -> Claim | str:
    now = utcnow()
    with UnitOfWork(Actor.system(tenant_id)) as uow:
        row = uow.session.exec(
            select(Payment).where(col(Payment.id) == payment_id).with_for_update(skip_locked=True)
        ).first()
        if row is None:
            return "busy or gone"
        due = row.next_attempt_at is not None and row.next_attempt_at <= now
        if row.status == PaymentStatus.FAILED and due:
            row.status = PaymentStatus.REQUESTED  # a declined charge's next attempt (its key is already new)
        elif row.status != PaymentStatus.REQUESTED:
            return f"already {row.status}"
        elif row.lease_until is not None and row.lease_until > now:
            return "being charged"
        elif not due:
            return "not due"
        if not row.provider_method_id or not row.provider_customer_id:
            card = uow.session.exec(
                select(PaymentMethod)
                .where(col(PaymentMethod.patient_id) == row.patient_id, col(PaymentMethod.removed_at).is_(None))
                .order_by(col(PaymentMethod.created_at).desc())
            ).first()
            if card is None:
                row.status, row.last_error, row.next_attempt_at = PaymentStatus.FAILED, "no_card_on_file", None
                row.updated_at = now
                uow.session.add(row)
                uow.commit()
                return "no card"
            row.provider_customer_id, row.provider_method_id = card.provider_customer_id, card.provider_method_id
        row.lease_until = now + timedelta(seconds=get_settings().payments_lease_seconds)
        row.updated_at = now
        uow.session.add(row)
        claim = Claim(
            tenant_id,
            row.id,
            row.idempotency_key,
            row.amount_minor,
            row.currency,
            str(row.provider_customer_id),
            str(row.provider_method_id),
        )
        uow.commit()
        return claim


def _max_attempts(uow: UnitOfWork, payment: Payment) -> int:
    from backend.payments.service import effective_policy
    from backend.scheduling.models import Appointment

    appointment = uow.session.get(Appointment, payment.appointment_id) if payment.appointment_id else None
    policy: FeePolicy | None = effective_policy(uow, appointment.clinic_id if appointment is not None else None)
    return policy.max_charge_attempts if policy is not None else 1


def _record_result(claim: Claim, result: ChargeResult) -> str:
    now = utcnow()
    actor = Actor.system(claim.tenant_id)
    with UnitOfWork(actor) as uow:
        row = uow.session.exec(select(Payment).where(col(Payment.id) == claim.payment_id).with_for_update()).first()
        if row is None or row.idempotency_key != claim.key:
            return "superseded"
        if row.status != PaymentStatus.REQUESTED:
            return f"already {row.status}"  # the webhook was first
        row.lease_until = None
        row.updated_at = now
        if result.payment_intent_id:
            row.provider_payment_intent_id = result.payment_intent_id
        if result.charge_id:
            row.provider_charge_id = result.charge_id
        if result.status == "succeeded":
            row.status, row.settled_at, row.next_attempt_at, row.last_error = PaymentStatus.SUCCEEDED, now, None, ""
        elif result.status == "failed":
            row.status, row.last_error = PaymentStatus.FAILED, result.error[:300]
            if row.attempt < _max_attempts(uow, row):
                row.attempt += 1
                row.idempotency_key = idempotency_key(row.id, row.attempt)
                row.next_attempt_at = now + RETRY_DELAY
            else:
                row.next_attempt_at = None
        else:
            row.next_attempt_at = None  # pending at the gateway: its webhook settles it
        uow.session.add(row)
        record(
            actor,
            uow,
            action=f"payments.charge_{result.status}",
            entity_type="payment",
            entity_id=row.id,
            data={"kind": row.kind, "amount_minor": row.amount_minor, "attempt": row.attempt, "error": row.last_error},
        )
        uow.commit()
        return result.status


def charge(tenant_id: uuid.UUID, payment_id: uuid.UUID) -> str:
    """Charge one ledger row if it is due (the Celery task 'payments.charge'); returns what happened. A gateway
    error other than a decline propagates: the row keeps its key and lease, and the sweep asks again."""
    claim = _claim(tenant_id, payment_id)
    if isinstance(claim, str):
        return claim
    result = get_gateway().charge(
        amount_minor=claim.amount_minor,
        currency=claim.currency,
        customer_id=claim.customer_id,
        method_id=claim.method_id,
        idempotency_key=claim.key,
        metadata={"tenant_id": str(claim.tenant_id), "payment_id": str(claim.payment_id)},
    )
    return _record_result(claim, result)


def due_payments(limit: int = SWEEP_BATCH) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(tenant, payment) of every row due a charge across practices: requested and not leased (a lost enqueue, a
    dead worker), or failed with a retry due."""
    now = utcnow()
    with UnitOfWork(system=True) as uow:
        rows = uow.session.exec(
            select(Payment.tenant_id, Payment.id)
            .where(
                col(Payment.status).in_((PaymentStatus.REQUESTED, PaymentStatus.FAILED)),
                col(Payment.next_attempt_at) <= now,
                or_(col(Payment.lease_until).is_(None), col(Payment.lease_until) <= now),
            )
            .order_by(col(Payment.next_attempt_at))
            .limit(limit)
        ).all()
        return [(t, p) for t, p in rows]


def sweep() -> dict[str, int]:
    """Charge every due row (bounded batch); returns how many of each outcome."""
    counts: dict[str, int] = {}
    for tenant_id, payment_id in due_payments():
        try:
            outcome = charge(tenant_id, payment_id)
        except Exception as exc:  # noqa: BLE001 - any failure: the row keeps its key, the next sweep asks again
            logger.warning("charge %s failed: %s; retried when its lease runs out", payment_id, type(exc).__name__)
            outcome = "error"
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts
