"""The payments package listens to the domain: a late cancellation or a no-show becomes a fee on the ledger.

Scheduling only records domain events (backend.events.emit) and never imports this package; `register()` (called
once by the composition point, backend.composition) subscribes the handlers below. Each runs inside the
transaction of the change that emitted the event: the fee row commits with the cancellation or the no-show (or
not at all), and its charge is enqueued after commit (a lost enqueue is the sweep's).

A fee is written only when the policy that applies at the appointment's clinic has one and the patient accepted the
current version of that policy. The ledger's UNIQUE (tenant, appointment, kind) means one fee per appointment and
kind, however often the event comes.

"Card required to book" is not checked here: the patient's booking entry points ask
backend.payments.service.check_card_to_book before they book, so the booking hot path is untouched.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta

from sqlmodel import col, select

from backend import events, jobs
from backend.audit.service import record
from backend.db import UnitOfWork
from backend.events import DomainEvent
from backend.payments import tasks as _tasks  # noqa: F401 - registers 'payments.charge' wherever fees are written
from backend.payments.charges import idempotency_key
from backend.payments.models import FeePolicy, Payment, PaymentKind, PaymentStatus
from backend.payments.service import active_card, effective_policy, has_accepted
from backend.scheduling.models import Appointment, AppointmentStatus
from backend.tenancy.context import Actor
from backend.types import utcnow

Handler = Callable[[UnitOfWork, DomainEvent], None]


def _appointment(uow: UnitOfWork, event: DomainEvent) -> Appointment | None:
    if not event.entity_id:
        return None
    return uow.session.get(Appointment, uuid.UUID(event.entity_id))


def write_fee(uow: UnitOfWork, appointment: Appointment, kind: PaymentKind, policy: FeePolicy, amount: int) -> Payment:
    """The fee row (once per appointment and kind) and, after commit, its charge."""
    existing = uow.session.exec(
        select(Payment).where(col(Payment.appointment_id) == appointment.id, col(Payment.kind) == kind)
    ).first()
    if existing is not None:
        return existing
    if appointment.patient_id is None or uow.tenant_id is None:
        raise ValueError("a fee belongs to a patient's appointment")
    payment_id = uuid.uuid4()
    card = active_card(uow, appointment.patient_id)
    now = utcnow()
    payment = Payment(
        id=payment_id,
        tenant_id=uow.tenant_id,
        patient_id=appointment.patient_id,
        appointment_id=appointment.id,
        kind=kind,
        amount_minor=amount,
        currency=policy.currency,
        idempotency_key=idempotency_key(payment_id, 1),
        created_at=now,
        updated_at=now,
        next_attempt_at=now,
    )
    if card is None:
        payment.status, payment.last_error, payment.next_attempt_at = PaymentStatus.FAILED, "no_card_on_file", None
    else:
        payment.provider_customer_id, payment.provider_method_id = card.provider_customer_id, card.provider_method_id
    uow.session.add(payment)
    uow.flush()
    actor = uow.actor or Actor.system(uow.tenant_id)
    record(
        actor,
        uow,
        action="payments.fee_requested",
        entity_type="payment",
        entity_id=payment.id,
        data={
            "kind": str(kind),
            "amount_minor": amount,
            "currency": policy.currency,
            "appointment_id": str(appointment.id),
        },
    )
    if card is not None:
        jobs.enqueue_after_commit(uow, "payments.charge", str(uow.tenant_id), str(payment.id))
    return payment


def _fee_policy(uow: UnitOfWork, appointment: Appointment) -> FeePolicy | None:
    """The policy at the appointment's clinic, if the patient accepted its current version."""
    if appointment.patient_id is None:
        return None
    policy = effective_policy(uow, appointment.clinic_id)
    if policy is None or not has_accepted(uow, appointment.patient_id, policy):
        return None
    return policy


def _on_cancelled(uow: UnitOfWork, event: DomainEvent) -> None:
    if event.data.get("rescheduled_to"):
        return  # a move, not a cancellation
    appointment = _appointment(uow, event)
    if appointment is None or appointment.status != AppointmentStatus.LATE_CANCELLED:
        return
    policy = _fee_policy(uow, appointment)
    if policy is None or policy.late_cancel_fee_minor <= 0:
        return
    cancelled = appointment.cancelled_at or utcnow()
    # The booking policy decides what is late; the fee policy's window may only be narrower.
    if appointment.start_at - cancelled >= timedelta(minutes=policy.late_cancel_window_minutes):
        return
    write_fee(uow, appointment, PaymentKind.LATE_CANCEL_FEE, policy, policy.late_cancel_fee_minor)


def _on_updated(uow: UnitOfWork, event: DomainEvent) -> None:
    appointment = _appointment(uow, event)
    if appointment is None:
        return
    if appointment.status == AppointmentStatus.NO_SHOW:
        policy = _fee_policy(uow, appointment)
        if policy is not None and policy.no_show_fee_minor > 0:
            write_fee(uow, appointment, PaymentKind.NO_SHOW_FEE, policy, policy.no_show_fee_minor)
    elif appointment.status == AppointmentStatus.COMPLETED:
        _withdraw_no_show_fee(uow, appointment)


def _withdraw_no_show_fee(uow: UnitOfWork, appointment: Appointment) -> None:
    """The attendance was corrected to 'completed': a no-show fee not charged yet is waived (a charged one stays
    for staff to refund)."""
    fee = uow.session.exec(
        select(Payment)
        .where(col(Payment.appointment_id) == appointment.id, col(Payment.kind) == PaymentKind.NO_SHOW_FEE)
        .with_for_update()
    ).first()
    if fee is None or fee.status not in (PaymentStatus.REQUESTED, PaymentStatus.FAILED):
        return
    now = utcnow()
    fee.status, fee.waive_reason, fee.next_attempt_at, fee.settled_at = (
        PaymentStatus.WAIVED,
        "attendance corrected",
        None,
        now,
    )
    fee.updated_at = now
    uow.session.add(fee)
    if uow.tenant_id is not None:
        record(
            uow.actor or Actor.system(uow.tenant_id),
            uow,
            action="payments.waived",
            entity_type="payment",
            entity_id=fee.id,
            data={"kind": fee.kind, "reason": "attendance corrected"},
        )


HANDLERS: dict[str, tuple[Handler, ...]] = {
    "appointment.cancelled": (_on_cancelled,),
    "appointment.updated": (_on_updated,),
}

_removers: list[Callable[[], None]] = []


def register() -> None:
    """Subscribe every handler (idempotent)."""
    if _removers:
        return
    for name, handlers in HANDLERS.items():
        for handler in handlers:
            _removers.append(events.subscribe(name, handler))


def unregister() -> None:
    while _removers:
        _removers.pop()()
