"""Payments: the fee policy (practice, clinic override, versions, acceptance), cards on file, fees that follow
late cancellations and no-shows, the ledger (never charged twice), waivers, CSV export, and Stripe through the
real SDK against a local server that answers like Stripe (tests/stripe_server.py), with signed webhooks.

Celery is eager here (tests/conftest.py): the charge task runs in-process right after the commit that wrote the fee.
"""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
import stripe
from fastapi.testclient import TestClient

from backend.api.app import api
from backend.audit.models import AuditEvent
from backend.errors import Conflict, ValidationFailed
from backend.payments import charges, gateway, service
from backend.payments.models import FeePolicy, Payment, PaymentMethod, PolicyAcceptance
from backend.scheduling import booking
from backend.scheduling.models import Appointment, AppointmentStatus
from backend.settings import get_settings
from backend.types import utcnow
from tests.factories import Practice, add_appointment, bearer, call, make_practice, rows
from tests.stripe_server import StripeServer, running_stripe

WEBHOOK_SECRET = "whsec_test_payments_secret"
SECRET_KEY = "sk_test_payments"


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(api) as c:
        yield c


@pytest.fixture
def harbor(db: sa.Engine) -> Practice:
    return make_practice("Harbor Mental Health", "harbor")


@pytest.fixture(scope="module")
def stripe_api() -> Iterator[StripeServer]:
    yield from running_stripe()


@pytest.fixture
def stripe_mode(monkeypatch: pytest.MonkeyPatch, stripe_api: StripeServer) -> StripeServer:
    settings = get_settings()
    monkeypatch.setattr(settings, "payments_mode", "stripe")
    monkeypatch.setattr(settings, "stripe_secret_key", SECRET_KEY)
    monkeypatch.setattr(settings, "stripe_api_base", stripe_api.url)
    monkeypatch.setattr(settings, "stripe_webhook_secret", WEBHOOK_SECRET)
    return stripe_api


@pytest.fixture
def webhook_secret(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(get_settings(), "stripe_webhook_secret", WEBHOOK_SECRET)
    return WEBHOOK_SECRET


def set_policy(p: Practice, **changes: Any) -> service.FeePolicyView:
    base = {"late_cancel_fee_minor": 2500, "no_show_fee_minor": 7500, "late_cancel_window_minutes": 1440}
    return call(p.admin, service.update_fee_policy, changes=base | changes)


def accept(p: Practice) -> service.FeePolicyView:
    shown = call(p.patient_actor, service.get_fee_policy)
    assert shown.id is not None
    return call(p.patient_actor, service.accept_fee_policy, policy_id=shown.id, version=shown.version)


def save_fake_card(p: Practice) -> service.CardView:
    setup = call(p.patient_actor, service.start_card_setup)
    return call(p.patient_actor, service.confirm_card_setup, setup_intent_id=setup.setup_intent_id)


def late_cancel(p: Practice, hours_ahead: float = 3) -> uuid.UUID:
    appointment = add_appointment(p, utcnow() + timedelta(hours=hours_ahead))
    cancelled = call(p.patient_actor, booking.cancel_appointment, appointment.id)
    assert cancelled.status == AppointmentStatus.LATE_CANCELLED
    return appointment.id


def no_show(p: Practice) -> uuid.UUID:
    appointment = add_appointment(p, utcnow() - timedelta(hours=2))
    call(p.doctor, booking.mark_attendance, appointment.id, outcome="no_show")
    return appointment.id


def signed(payload: dict[str, Any], secret: str = WEBHOOK_SECRET, *, at: int | None = None) -> tuple[str, str]:
    body = json.dumps(payload)
    stamp = at if at is not None else int(time.time())
    signature = stripe.WebhookSignature._compute_signature(f"{stamp}.{body}", secret)
    return body, f"t={stamp},v1={signature}"


def event(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"evt_{uuid.uuid4().hex[:12]}",
        "object": "event",
        "type": kind,
        "data": {"object": obj},
        "api_version": "2024-06-20",
        "created": int(time.time()),
    }


def post_webhook(client: TestClient, payload: dict[str, Any], **kw: Any) -> Any:
    body, header = signed(payload, **kw)
    return client.post(
        "/api/v1/webhooks/stripe",
        content=body,
        headers={"Stripe-Signature": header, "Content-Type": "application/json"},
    )


# --- policy --------------------------------------------------------------------------------------------------


def test_policy_versions_and_acceptance(harbor: Practice) -> None:
    assert call(harbor.patient_actor, service.get_fee_policy).source == "none"
    first = set_policy(harbor)
    assert (first.source, first.version) == ("practice", 1)
    same = set_policy(harbor)  # nothing changed: no new version
    assert same.version == 1
    accepted = accept(harbor)
    assert accepted.accepted_at is not None
    changed = set_policy(harbor, no_show_fee_minor=9000)
    assert changed.version == 2
    assert call(harbor.patient_actor, service.get_fee_policy).accepted_at is None  # v2 needs acceptance again
    with pytest.raises(Conflict):
        call(harbor.patient_actor, service.accept_fee_policy, policy_id=changed.id, version=1)
    # A clinic override starts from the practice's terms and applies at that clinic only.
    override = call(
        harbor.admin, service.update_fee_policy, clinic_id=harbor.clinic2.id, changes={"no_show_fee_minor": 100}
    )
    assert (override.source, override.late_cancel_fee_minor, override.no_show_fee_minor) == ("clinic", 2500, 100)
    assert call(harbor.admin, service.get_fee_policy, clinic_id=harbor.clinic.id).no_show_fee_minor == 9000
    assert [e.action for e in rows(harbor, AuditEvent) if e.action.startswith("payments.")].count(
        "payments.policy_changed"
    ) == 3
    with pytest.raises(ValidationFailed):
        call(harbor.admin, service.update_fee_policy, changes={"no_show_fee_minor": -1})
    with pytest.raises(ValidationFailed):
        call(harbor.admin, service.update_fee_policy, changes={"no_show_fee_minor": 12.5})


def test_card_required_to_book(harbor: Practice) -> None:
    set_policy(harbor, card_required=True)
    with pytest.raises(ValidationFailed) as refused:
        call(harbor.patient_actor, service.check_card_to_book, clinic_id=harbor.clinic.id)
    assert refused.value.code == "payments.card_required"
    card = save_fake_card(harbor)
    assert (card.brand, card.last4) == ("visa", "4242")
    call(harbor.patient_actor, service.check_card_to_book, clinic_id=harbor.clinic.id)


# --- fees from the domain ------------------------------------------------------------------------------------


def test_late_cancellation_fee_is_charged_once(harbor: Practice) -> None:
    set_policy(harbor)
    accept(harbor)
    save_fake_card(harbor)
    appointment_id = late_cancel(harbor)
    (fee,) = rows(harbor, Payment)
    assert (fee.kind, fee.amount_minor, fee.currency, fee.appointment_id) == (
        "late_cancel_fee",
        2500,
        "usd",
        appointment_id,
    )
    assert fee.status == "succeeded" and fee.provider_payment_intent_id and fee.settled_at is not None
    # The task again, the sweep: nothing more.
    assert charges.charge(harbor.tenant_id, fee.id) == "already succeeded"
    assert charges.sweep() == {}
    # The ledger's unique key: the same fee cannot be written twice.
    with pytest.raises(sa.exc.IntegrityError), sa.orm.Session(get_engine_owner()) as s:
        s.add(
            Payment(
                tenant_id=harbor.tenant_id,
                patient_id=harbor.patient.id,
                appointment_id=appointment_id,
                kind="late_cancel_fee",
                amount_minor=2500,
                currency="usd",
                idempotency_key="other",
            )
        )
        s.commit()
    mine = call(harbor.patient_actor, service.list_payments)
    assert [(v.kind, v.status, v.amount_minor) for v in mine] == [("late_cancel_fee", "succeeded", 2500)]


def get_engine_owner() -> sa.Engine:
    from backend.db import get_system_engine

    return get_system_engine()


def test_no_fee_without_acceptance_or_outside_the_window(harbor: Practice) -> None:
    set_policy(harbor, late_cancel_window_minutes=60)
    save_fake_card(harbor)
    late_cancel(harbor)  # not accepted
    accept(harbor)
    late_cancel(harbor, hours_ahead=3)  # late for booking (24 h), outside the fee's 60 minutes
    assert rows(harbor, Payment) == []


def test_no_show_fee_then_attendance_corrected_waives_it(harbor: Practice) -> None:
    set_policy(harbor)
    accept(harbor)  # no card: the fee is recorded, failed, for staff to see
    appointment_id = no_show(harbor)
    (fee,) = rows(harbor, Payment)
    assert (fee.kind, fee.status, fee.last_error, fee.amount_minor) == (
        "no_show_fee",
        "failed",
        "no_card_on_file",
        7500,
    )
    call(harbor.doctor, booking.mark_attendance, appointment_id, outcome="completed")
    (fee,) = rows(harbor, Payment)
    assert (fee.status, fee.waive_reason) == ("waived", "attendance corrected")


def test_declined_charge_is_retried_as_the_policy_says(harbor: Practice) -> None:
    set_policy(harbor, max_charge_attempts=2)
    accept(harbor)
    save_fake_card(harbor)
    with sa.orm.Session(get_engine_owner()) as s:  # the fake declines a card whose id ends in '_declined'
        s.execute(sa.update(PaymentMethod).values(provider_method_id="pm_fake_declined"))
        s.commit()
    no_show(harbor)
    (fee,) = rows(harbor, Payment)
    assert (fee.status, fee.attempt, fee.last_error) == ("failed", 2, "card_declined")
    assert fee.next_attempt_at is not None and fee.idempotency_key.endswith(":2")
    with sa.orm.Session(get_engine_owner()) as s:
        s.execute(sa.update(Payment).values(next_attempt_at=utcnow() - timedelta(seconds=1)))
        s.commit()
    assert charges.sweep() == {"failed": 1}
    (fee,) = rows(harbor, Payment)
    assert (fee.status, fee.attempt, fee.next_attempt_at) == ("failed", 2, None)  # the last attempt
    assert charges.sweep() == {}


# --- REST ----------------------------------------------------------------------------------------------------


def test_rest_policy_cards_ledger_export_and_waive(harbor: Practice, client: TestClient) -> None:
    admin = bearer(client, harbor.admin_user.email)
    patient = bearer(client, harbor.patient_user.email)
    doctor = bearer(client, harbor.doctor_user.email)
    r = client.put("/api/v1/payments/policy", headers=admin, json={"no_show_fee_minor": 5000, "policy_text": "Fees."})
    assert r.status_code == 200, r.text
    assert client.put("/api/v1/payments/policy", headers=patient, json={"no_show_fee_minor": 1}).status_code == 403
    assert client.put("/api/v1/payments/policy", headers=admin, json={"no_show_fee_minor": 1.5}).status_code == 422
    shown = client.get("/api/v1/payments/policy", headers=patient).json()
    assert (shown["policy_text"], shown["no_show_fee_minor"], shown["accepted_at"]) == ("Fees.", 5000, None)
    r = client.post(f"/api/v1/payments/policy/{shown['id']}/accept", headers=patient, json={"version": 1})
    assert r.status_code == 200 and r.json()["accepted_at"]
    setup = client.post("/api/v1/payments/methods/setup", headers=patient).json()
    assert setup["mode"] == "fake"
    r = client.post(
        "/api/v1/payments/methods/confirm", headers=patient, json={"setup_intent_id": setup["setup_intent_id"]}
    )
    assert r.status_code == 200 and r.json()["last4"] == "4242"
    assert [c["last4"] for c in client.get("/api/v1/payments/methods", headers=patient).json()] == ["4242"]
    # A no-show with no... card declined: staff see the failed fee and waive it.
    with sa.orm.Session(get_engine_owner()) as s:
        s.execute(sa.update(PaymentMethod).values(provider_method_id="pm_fake_declined"))
        s.commit()
    no_show(harbor)
    listed = client.get("/api/v1/payments", headers=admin, params={"status": "failed"}).json()
    assert [(x["kind"], x["amount_minor"], x["patient_name"]) for x in listed] == [
        ("no_show_fee", 5000, harbor.patient.full_name)
    ]
    assert client.get("/api/v1/payments", headers=admin, params={"status": "succeeded"}).json() == []
    assert client.get("/api/v1/payments", headers=admin, params={"status": "bogus"}).status_code == 422
    export = client.get("/api/v1/payments/export.csv", headers=admin)
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    (line,) = list(csv.DictReader(io.StringIO(export.text)))
    assert (line["amount"], line["currency"], line["status"]) == ("50.00", "USD", "failed")
    assert client.get("/api/v1/payments/export.csv", headers=doctor).status_code == 403
    fee_id = listed[0]["id"]
    assert client.post(f"/api/v1/payments/{fee_id}/waive", headers=patient, json={}).status_code == 403
    r = client.post(f"/api/v1/payments/{fee_id}/waive", headers=doctor, json={"reason": "first time"})
    assert r.status_code == 200 and r.json()["status"] == "waived"
    (waived,) = [e for e in rows(harbor, AuditEvent) if e.action == "payments.waived"]
    assert waived.actor_user_id == harbor.doctor_user.id
    assert client.get("/api/v1/payments", headers=patient).json()[0]["status"] == "waived"


# --- Stripe, through the SDK ---------------------------------------------------------------------------------


def test_stripe_card_setup_and_charge_with_idempotency_keys(harbor: Practice, stripe_mode: StripeServer) -> None:
    server = stripe_mode
    set_policy(harbor)
    accept(harbor)
    setup = call(harbor.patient_actor, service.start_card_setup)
    assert setup.mode == "stripe" and setup.client_secret.startswith(setup.setup_intent_id)
    with pytest.raises(Conflict):  # not confirmed in the browser yet
        call(harbor.patient_actor, service.confirm_card_setup, setup_intent_id=setup.setup_intent_id)
    pm = server.confirm_setup(setup.setup_intent_id, brand="mastercard", last4="4444")
    card = call(harbor.patient_actor, service.confirm_card_setup, setup_intent_id=setup.setup_intent_id)
    assert (card.brand, card.last4) == ("mastercard", "4444")
    (method,) = rows(harbor, PaymentMethod)
    assert method.provider_method_id == pm and method.provider_customer_id.startswith("cus_")
    for form in (*server.creates("/v1/customers"), *server.creates("/v1/setup_intents")):
        assert "number" not in json.dumps(form)
    appointment_id = late_cancel(harbor)
    (fee,) = rows(harbor, Payment)
    assert fee.status == "succeeded"
    (request,) = [r for r in server.requests if r[1] == "/v1/payment_intents"]
    _, _, headers, form = request
    assert headers["idempotency-key"] == fee.idempotency_key
    assert (form["amount"], form["currency"], form["payment_method"], form["off_session"], form["confirm"]) == (
        "2500",
        "usd",
        pm,
        "true",
        "true",
    )
    assert form["metadata"] == {"tenant_id": str(harbor.tenant_id), "payment_id": str(fee.id)}
    assert fee.provider_payment_intent_id in server.payment_intents
    assert fee.appointment_id == appointment_id
    # Every creating call carried an idempotency key.
    assert all(h.get("idempotency-key") for m, _, h, _ in server.requests if m == "POST")


def test_stripe_decline_is_recorded_with_its_code(harbor: Practice, stripe_mode: StripeServer) -> None:
    set_policy(harbor, max_charge_attempts=1)
    accept(harbor)
    setup = call(harbor.patient_actor, service.start_card_setup)
    pm = stripe_mode.confirm_setup(setup.setup_intent_id)
    call(harbor.patient_actor, service.confirm_card_setup, setup_intent_id=setup.setup_intent_id)
    stripe_mode.decline(pm)
    no_show(harbor)
    (fee,) = rows(harbor, Payment)
    assert (fee.status, fee.last_error, fee.next_attempt_at) == ("failed", "card_declined", None)
    assert fee.provider_payment_intent_id in stripe_mode.payment_intents


def test_gateway_replays_a_repeated_request_as_stripe_does(stripe_mode: StripeServer) -> None:
    gw = gateway.get_gateway()
    customer = gw.create_customer(idempotency_key="customer:x", metadata={})
    seti = gw.start_setup(customer_id=customer, idempotency_key="setup:x", metadata={"patient_id": "p"})
    pm = stripe_mode.confirm_setup(seti.setup_intent_id)
    first = gw.charge(
        amount_minor=100,
        currency="usd",
        customer_id=customer,
        method_id=pm,
        idempotency_key="payment:replay:1",
        metadata={},
    )
    again = gw.charge(
        amount_minor=100,
        currency="usd",
        customer_id=customer,
        method_id=pm,
        idempotency_key="payment:replay:1",
        metadata={},
    )
    assert first == again and first.status == "succeeded"
    assert sum(1 for pi in stripe_mode.payment_intents.values() if pi["customer"] == customer) == 1


# --- webhooks ------------------------------------------------------------------------------------------------


def _requested_fee(p: Practice) -> Payment:
    set_policy(p)
    accept(p)
    appointment = add_appointment(p, utcnow() - timedelta(hours=2))
    with sa.orm.Session(get_engine_owner()) as s:
        payment_id = uuid.uuid4()
        s.add(
            Payment(
                id=payment_id,
                tenant_id=p.tenant_id,
                patient_id=p.patient.id,
                appointment_id=appointment.id,
                kind="no_show_fee",
                amount_minor=7500,
                currency="usd",
                idempotency_key=charges.idempotency_key(payment_id, 1),
                lease_until=utcnow() + timedelta(minutes=5),
            )
        )
        s.commit()
    (fee,) = rows(p, Payment)
    return fee


def test_forged_webhook_is_400_and_changes_nothing(harbor: Practice, client: TestClient, webhook_secret: str) -> None:
    fee = _requested_fee(harbor)
    payload = event(
        "payment_intent.succeeded",
        {
            "id": "pi_forged",
            "object": "payment_intent",
            "metadata": {"tenant_id": str(harbor.tenant_id), "payment_id": str(fee.id)},
        },
    )
    before = [(r.id, r.status) for r in rows(harbor, Payment)]
    assert post_webhook(client, payload, secret="whsec_not_the_secret").status_code == 400
    stale = int(time.time()) - 3600  # a replayed old delivery
    assert post_webhook(client, payload, at=stale).status_code == 400
    body, header = signed(payload)
    tampered = body.replace("pi_forged", "pi_tampered")
    r = client.post("/api/v1/webhooks/stripe", content=tampered, headers={"Stripe-Signature": header})
    assert r.status_code == 400
    r = client.post("/api/v1/webhooks/stripe", content=body)
    assert r.status_code == 400
    assert [(r.id, r.status) for r in rows(harbor, Payment)] == before


def test_webhooks_reconcile_the_ledger_idempotently(harbor: Practice, client: TestClient, webhook_secret: str) -> None:
    fee = _requested_fee(harbor)
    meta = {"tenant_id": str(harbor.tenant_id), "payment_id": str(fee.id)}
    succeeded = event(
        "payment_intent.succeeded",
        {"id": "pi_hook1", "object": "payment_intent", "metadata": meta, "latest_charge": "ch_hook1"},
    )
    r = post_webhook(client, succeeded)
    assert r.status_code == 200 and r.json() == {"outcome": "succeeded"}
    assert post_webhook(client, succeeded).json() == {"outcome": "unchanged"}  # Stripe retries: nothing more
    failed = event(
        "payment_intent.payment_failed",
        {
            "id": "pi_hook1",
            "object": "payment_intent",
            "metadata": meta,
            "last_payment_error": {"code": "card_declined"},
        },
    )
    assert post_webhook(client, failed).json() == {"outcome": "unchanged"}  # a success is never undone by it
    (row,) = rows(harbor, Payment)
    assert (row.status, row.provider_payment_intent_id, row.provider_charge_id) == ("succeeded", "pi_hook1", "ch_hook1")
    refunded = event(
        "charge.refunded", {"id": "ch_hook1", "object": "charge", "payment_intent": "pi_hook1", "metadata": meta}
    )
    assert post_webhook(client, refunded).json() == {"outcome": "refunded"}
    assert post_webhook(client, refunded).json() == {"outcome": "unchanged"}
    other = event("payment_intent.succeeded", {"id": "pi_elsewhere", "object": "payment_intent", "metadata": {}})
    assert post_webhook(client, other).json() == {"outcome": "not ours"}
    assert post_webhook(client, event("customer.created", {"id": "cus_1"})).json() == {"outcome": "ignored"}
    assert rows(harbor, Payment)[0].status == "refunded"


def test_setup_intent_webhook_saves_the_card(harbor: Practice, client: TestClient, stripe_mode: StripeServer) -> None:
    setup = call(harbor.patient_actor, service.start_card_setup)
    stripe_mode.confirm_setup(setup.setup_intent_id, last4="1881")
    intent = stripe_mode.setup_intents[setup.setup_intent_id]
    payload = event("setup_intent.succeeded", dict(intent))
    assert post_webhook(client, payload).json() == {"outcome": "card saved"}
    assert post_webhook(client, payload).json() == {"outcome": "card saved"}  # the same card, still one row
    (method,) = rows(harbor, PaymentMethod)
    assert method.last4 == "1881" and method.patient_id == harbor.patient.id
    assert rows(harbor, PolicyAcceptance) == [] and rows(harbor, FeePolicy) == []


def test_rest_booking_needs_a_card_when_the_policy_says_so(harbor: Practice, client: TestClient) -> None:
    from tests.factories import add_availability, local_start

    add_availability(harbor)
    set_policy(harbor, card_required=True)
    patient = bearer(client, harbor.patient_user.email)
    admin = bearer(client, harbor.admin_user.email)
    body = {"provider_id": str(harbor.provider.id), "start": local_start(3, 10).isoformat()}
    for path in ("/api/v1/appointments", "/api/v1/holds"):
        r = client.post(path, headers=patient, json=body)
        assert r.status_code == 422 and r.json()["code"] == "payments.card_required", r.text
    assert [a for a in rows(harbor, Appointment)] == []
    # Staff booking for the patient are not held to it; the patient with a card is not refused.
    r = client.post("/api/v1/appointments", headers=admin, json=body | {"patient_id": str(harbor.patient.id)})
    assert r.status_code == 201, r.text
    save_fake_card(harbor)
    r = client.post("/api/v1/appointments", headers=patient, json=body | {"start": local_start(3, 11).isoformat()})
    assert r.status_code == 201, r.text


def test_refund_through_stripe_is_one_refund(harbor: Practice, stripe_mode: StripeServer, client: TestClient) -> None:
    set_policy(harbor)
    accept(harbor)
    setup = call(harbor.patient_actor, service.start_card_setup)
    stripe_mode.confirm_setup(setup.setup_intent_id)
    call(harbor.patient_actor, service.confirm_card_setup, setup_intent_id=setup.setup_intent_id)
    no_show(harbor)
    (fee,) = rows(harbor, Payment)
    assert fee.status == "succeeded"
    admin = bearer(client, harbor.admin_user.email)
    doctor = bearer(client, harbor.doctor_user.email)
    assert client.post(f"/api/v1/payments/{fee.id}/refund", headers=doctor).status_code == 403
    for _ in range(2):
        r = client.post(f"/api/v1/payments/{fee.id}/refund", headers=admin)
        assert r.status_code == 200 and r.json()["status"] == "refunded", r.text
    refunds = [
        form for form in stripe_mode.creates("/v1/refunds") if form["payment_intent"] == fee.provider_payment_intent_id
    ]
    assert len(refunds) == 1  # the second answer came from the ledger: refunded already
    (request,) = [h for m, p, h, f in stripe_mode.requests if p == "/v1/refunds" and f in refunds]
    assert request["idempotency-key"] == f"refund:{fee.id}"
    assert [e.action for e in rows(harbor, AuditEvent)].count("payments.refunded") == 1
    # Waiving a paid fee is refused: refund it instead.
    with pytest.raises(Conflict):
        call(harbor.admin, service.waive_payment, fee.id)
