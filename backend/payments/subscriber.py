"""The payments package listens to the domain: a late cancellation or a no-show becomes a fee on the ledger, and
an attended session (marked 'completed') becomes its copay or self-pay charge.

Scheduling only records domain events (backend.events.emit) and never imports this package; `register()` (called
once by the composition point, backend.composition) subscribes the handlers below. Each runs inside the
transaction of the change that emitted the event: the fee row commits with the cancellation or the no-show (or
not at all), and its charge is enqueued after commit (a lost enqueue is the sweep's).

A fee is written only when the policy that applies at the appointment's clinic has one and the patient accepted the
current version of that policy. The ledger's UNIQUE (tenant, appointment, kind) means one fee per appointment and
kind, however often the event comes.

A session is charged when staff mark it attended ('completed'), the moment a clinic bills a visit: the copay when
the policy collects copays (copay_enabled with an amount), else the self-pay price (the provider's own price in
`provider_prices`, else `self_pay_minor`). The patient owes the session whether or not they accepted the fee
policy, so its row is always written (once per appointment, whichever of the two kinds); it is charged to the card
only when they accepted the current version and keep a card on file. Otherwise it is 'failed' with the reason
('policy_not_accepted', 'no_card_on_file') and no retry: staff see it as due, collect it or waive it. Correcting
the attendance to 'no_show' waives a session charge not yet made (a charged one stays for staff to refund).

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


def write_fee(
    uow: UnitOfWork,
    appointment: Appointment,
    kind: PaymentKind,
    policy: FeePolicy,
    amount: int,
    *,
    due_reason: str | None = None,
) -> Payment:
    """The fee row (once per appointment and kind) and, after commit, its charge; with `due_reason` the row is
    owed but not charged (failed with that reason, no retry), for staff to see."""
    existing = uow.session.exec(
        select(Payment).where(col(Payment.appointment_id) == appointment.id, col(Payment.kind) == kind)
    ).first()
    if existing is not None:
        return existing
    if appointment.patient_id is None or uow.tenant_id is None:
        raise ValueError("a fee belongs to a patient's appointment")
    payment_id = uuid.uuid4()
    card = active_card(uow, appointment.patient_id) if due_reason is None else None
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
        payment.status, payment.last_error = PaymentStatus.FAILED, due_reason or "no_card_on_file"
    else:
        payment.provider_customer_id, payment.provider_method_id = card.provider_customer_id, card.provider_method_id
    uow.session.add(payment)
    uow.flush()
    if card is None:
        # Not retried: None at the insert would be taken for "no value" and get the column's default (now).
        payment.next_attempt_at = None
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
            "charged": card is not None,
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


SESSION_KINDS = (PaymentKind.COPAY, PaymentKind.SELF_PAY)


def session_charge(policy: FeePolicy, provider_id: uuid.UUID) -> tuple[PaymentKind, int] | None:
    """What an attended session with this provider costs under the policy: the copay when copays are collected,
    else the provider's self-pay price, else the practice's; None when nothing is charged."""
    if policy.copay_enabled and policy.copay_minor > 0:
        return PaymentKind.COPAY, policy.copay_minor
    prices = policy.provider_prices or {}
    price = prices.get(str(provider_id))
    amount = int(price) if isinstance(price, int) and not isinstance(price, bool) else policy.self_pay_minor
    return (PaymentKind.SELF_PAY, amount) if amount > 0 else None


def _charge_session(uow: UnitOfWork, appointment: Appointment) -> None:
    """The attended session's copay or self-pay row (once per appointment, whichever kind), charged only under an
    accepted policy with a card on file; otherwise written as due."""
    if appointment.patient_id is None:
        return
    written = uow.session.exec(
        select(Payment.id).where(col(Payment.appointment_id) == appointment.id, col(Payment.kind).in_(SESSION_KINDS))
    ).first()
    if written is not None:
        return  # the event again, or a correction back to 'completed': one session charge per appointment
    policy = effective_policy(uow, appointment.clinic_id)
    if policy is None:
        return
    found = session_charge(policy, appointment.provider_id)
    if found is None:
        return
    kind, amount = found
    if not has_accepted(uow, appointment.patient_id, policy):
        write_fee(uow, appointment, kind, policy, amount, due_reason="policy_not_accepted")
    elif active_card(uow, appointment.patient_id) is None:
        write_fee(uow, appointment, kind, policy, amount, due_reason="no_card_on_file")
    else:
        write_fee(uow, appointment, kind, policy, amount)


def _on_updated(uow: UnitOfWork, event: DomainEvent) -> None:
    appointment = _appointment(uow, event)
    if appointment is None:
        return
    if appointment.status == AppointmentStatus.NO_SHOW:
        _withdraw(uow, appointment, SESSION_KINDS)
        policy = _fee_policy(uow, appointment)
        if policy is not None and policy.no_show_fee_minor > 0:
            write_fee(uow, appointment, PaymentKind.NO_SHOW_FEE, policy, policy.no_show_fee_minor)
    elif appointment.status == AppointmentStatus.COMPLETED:
        _withdraw(uow, appointment, (PaymentKind.NO_SHOW_FEE,))
        _charge_session(uow, appointment)


def _withdraw(uow: UnitOfWork, appointment: Appointment, kinds: tuple[PaymentKind, ...]) -> None:
    """The attendance was corrected (no-show <-> completed): the other outcome's charges not made yet are waived.
    A charged one stays for staff to refund, and one being charged right now (leased) is left to its result."""
    now = utcnow()
    fees = uow.session.exec(
        select(Payment)
        .where(col(Payment.appointment_id) == appointment.id, col(Payment.kind).in_(kinds))
        .with_for_update()
    ).all()
    for fee in fees:
        if fee.status not in (PaymentStatus.REQUESTED, PaymentStatus.FAILED):
            continue
        if fee.status == PaymentStatus.REQUESTED and fee.lease_until is not None and fee.lease_until > now:
            continue
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
