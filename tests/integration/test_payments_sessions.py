"""Session charges: an attended session (marked 'completed') is charged its copay or self-pay price (per provider,
else the practice's), once per appointment however often the event comes; only under an accepted policy with a
card on file, otherwise written as due for staff; a correction of the attendance waives what is not charged yet.

Celery is eager here (tests/conftest.py): the charge task runs in-process right after the commit that wrote the row.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from backend import events
from backend.audit.models import AuditEvent
from backend.db import UnitOfWork
from backend.payments import charges, service
from backend.payments.models import Payment
from backend.scheduling import booking
from backend.scheduling.models import Appointment
from backend.types import utcnow
from tests.factories import Practice, add_appointment, add_provider, call, make_practice, rows


@pytest.fixture
def harbor(db: sa.Engine) -> Practice:
    return make_practice("Harbor Mental Health", "harbor")


def set_policy(p: Practice, **changes: Any) -> service.FeePolicyView:
    return call(p.admin, service.update_fee_policy, changes=changes)


def accept(p: Practice) -> None:
    shown = call(p.patient_actor, service.get_fee_policy)
    assert shown.id is not None
    call(p.patient_actor, service.accept_fee_policy, policy_id=shown.id, version=shown.version)


def save_card(p: Practice) -> None:
    setup = call(p.patient_actor, service.start_card_setup)
    call(p.patient_actor, service.confirm_card_setup, setup_intent_id=setup.setup_intent_id)


def attended(p: Practice, **kw: Any) -> uuid.UUID:
    appointment = add_appointment(p, utcnow() - timedelta(hours=2), **kw)
    call(p.admin, booking.mark_attendance, appointment.id, outcome="completed")
    return appointment.id


def ledger(p: Practice) -> list[tuple[str, str, int, str]]:
    return sorted((r.kind, r.status, r.amount_minor, r.last_error) for r in rows(p, Payment))


def test_attended_session_is_charged_its_self_pay_price_once(harbor: Practice) -> None:
    set_policy(harbor, self_pay_minor=15000)
    accept(harbor)
    save_card(harbor)
    appointment_id = attended(harbor)
    (row,) = rows(harbor, Payment)
    assert (row.kind, row.status, row.amount_minor, row.currency, row.appointment_id) == (
        "self_pay",
        "succeeded",
        15000,
        "usd",
        appointment_id,
    )
    assert row.provider_payment_intent_id and row.idempotency_key == f"payment:{row.id}:1"
    # Attendance recorded again, the event replayed, the task and the sweep again: still one charge.
    call(harbor.doctor, booking.mark_attendance, appointment_id, outcome="completed")
    with UnitOfWork(harbor.doctor) as uow:
        events.emit(uow, "appointment.updated", entity_id=appointment_id)
        events.emit(uow, "appointment.updated", entity_id=appointment_id)
        uow.commit()
    assert charges.charge(harbor.tenant_id, row.id) == "already succeeded"
    assert charges.sweep() == {}
    assert ledger(harbor) == [("self_pay", "succeeded", 15000, "")]
    # The patient sees it as a receipt; the audit trail has the request and the charge.
    (mine,) = call(harbor.patient_actor, service.list_payments)
    assert (mine.kind, mine.status, mine.amount_minor) == ("self_pay", "succeeded", 15000)
    actions = {a.action for a in rows(harbor, AuditEvent, entity_id=row.id)}
    assert {"payments.fee_requested", "payments.charge_succeeded"} <= actions


def test_provider_price_and_copay(harbor: Practice) -> None:
    other = add_provider(harbor, "Dr. Lena Ortiz")
    set_policy(harbor, self_pay_minor=15000, provider_prices={str(other.id): 18000})
    accept(harbor)
    save_card(harbor)
    attended(harbor)
    attended(harbor, provider=other)
    assert ledger(harbor) == [("self_pay", "succeeded", 15000, ""), ("self_pay", "succeeded", 18000, "")]
    # Copays collected: the session costs the copay instead (a new version, accepted again).
    set_policy(harbor, copay_enabled=True, copay_minor=3000)
    accept(harbor)
    attended(harbor, provider=other)
    assert ("copay", "succeeded", 3000, "") in ledger(harbor)
    assert len(rows(harbor, Payment)) == 3


def test_no_charge_without_acceptance_or_card_the_session_is_due(harbor: Practice) -> None:
    set_policy(harbor, self_pay_minor=12000)
    save_card(harbor)
    not_accepted = attended(harbor)  # a card, but the policy is not accepted: never charged
    assert ledger(harbor) == [("self_pay", "failed", 12000, "policy_not_accepted")]
    (row,) = rows(harbor, Payment)
    assert row.next_attempt_at is None and row.provider_payment_intent_id is None
    assert charges.charge(harbor.tenant_id, row.id) == "already failed"
    assert charges.sweep() == {}
    # Accepting later does not charge the session retroactively; staff see it as due and may waive it.
    accept(harbor)
    assert charges.sweep() == {}
    (seen,) = call(harbor.doctor, service.list_payments)
    assert (seen.appointment_id, seen.status, seen.last_error) == (not_accepted, "failed", "policy_not_accepted")
    call(harbor.doctor, service.waive_payment, row.id, reason="sliding scale")
    assert rows(harbor, Payment)[0].status == "waived"


def test_accepted_without_a_card_is_due(harbor: Practice) -> None:
    set_policy(harbor, copay_enabled=True, copay_minor=2500)
    accept(harbor)
    attended(harbor)
    assert ledger(harbor) == [("copay", "failed", 2500, "no_card_on_file")]
    assert charges.sweep() == {}


def test_nothing_to_charge_without_a_price_or_a_policy(harbor: Practice) -> None:
    attended(harbor)  # no policy at all
    set_policy(harbor, no_show_fee_minor=5000, copay_enabled=True)  # copay on, but no amount; no self-pay price
    accept(harbor)
    save_card(harbor)
    attended(harbor)
    assert rows(harbor, Payment) == []


def test_clinic_override_price_applies_at_that_clinic(harbor: Practice) -> None:
    set_policy(harbor, self_pay_minor=15000)
    call(harbor.admin, service.update_fee_policy, clinic_id=harbor.clinic2.id, changes={"self_pay_minor": 9000})
    accept(harbor)  # the patient's home clinic's policy
    save_card(harbor)
    attended(harbor, clinic=harbor.clinic2)  # another clinic's policy, not accepted by the patient: due
    attended(harbor)
    assert ledger(harbor) == [("self_pay", "failed", 9000, "policy_not_accepted"), ("self_pay", "succeeded", 15000, "")]


def test_attendance_corrected_to_no_show_waives_the_session_charge(harbor: Practice) -> None:
    set_policy(harbor, self_pay_minor=15000, no_show_fee_minor=5000)
    accept(harbor)  # no card: both rows due
    appointment_id = attended(harbor)
    call(harbor.doctor, booking.mark_attendance, appointment_id, outcome="no_show")
    assert ledger(harbor) == [
        ("no_show_fee", "failed", 5000, "no_card_on_file"),
        ("self_pay", "waived", 15000, "no_card_on_file"),
    ]
    # Back to 'completed': the no-show fee is waived; the session charge is not written a second time.
    call(harbor.doctor, booking.mark_attendance, appointment_id, outcome="completed")
    statuses = {r.kind: (r.status, r.waive_reason) for r in rows(harbor, Payment)}
    assert statuses == {
        "no_show_fee": ("waived", "attendance corrected"),
        "self_pay": ("waived", "attendance corrected"),
    }


def test_a_charged_session_stays_when_attendance_is_corrected(harbor: Practice) -> None:
    set_policy(harbor, self_pay_minor=15000)
    accept(harbor)
    save_card(harbor)
    appointment_id = attended(harbor)
    call(harbor.doctor, booking.mark_attendance, appointment_id, outcome="no_show")
    assert ledger(harbor) == [("self_pay", "succeeded", 15000, "")]  # refunded by staff if they decide so


def test_session_charges_stay_in_their_practice(harbor: Practice) -> None:
    cove = make_practice("Cove Counselling", "cove")
    set_policy(harbor, self_pay_minor=15000)
    accept(harbor)
    save_card(harbor)
    appointment_id = attended(harbor)
    assert rows(cove, Payment) == []
    assert call(cove.admin, service.list_payments) == []
    assert call(cove.patient_actor, service.list_payments) == []
    (row,) = rows(harbor, Payment)
    # Another practice's event naming this appointment finds nothing to charge in its own scope.
    with UnitOfWork(cove.doctor) as uow:
        assert uow.session.get(Appointment, appointment_id) is None
        events.emit(uow, "appointment.updated", entity_id=appointment_id)
        uow.commit()
    assert rows(cove, Payment) == [] and len(rows(harbor, Payment)) == 1
    with pytest.raises(Exception) as refused:
        call(cove.admin, service.waive_payment, row.id)
    assert type(refused.value).__name__ == "NotFound"
