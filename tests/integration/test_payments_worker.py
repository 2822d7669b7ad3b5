"""A fee is charged once even when the worker is SIGKILLed between the charge request and its result.

A real `celery worker` (prefork, as deployed) on its own queue; the real `stripe` SDK pointed at the local server
that answers like Stripe (tests/stripe_server.py), which makes the charge and then holds its answer: the worker is
killed while it waits. After recovery (a new worker whose beat sweeps the ledger once the charge's lease ran out),
the same idempotency key is sent again, Stripe answers with the PaymentIntent it already made, and the ledger
matches what the provider recorded: one PaymentIntent, one succeeded row. Conditions are polled with deadlines.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from backend.payments import service
from backend.payments.models import Payment
from backend.scheduling import booking
from backend.settings import get_settings
from backend.types import utcnow
from tests.factories import Practice, add_appointment, call, make_practice, rows
from tests.stripe_server import StripeServer, running_stripe
from tests.worker_process import WorkerProcess, app_publishing_to, own_queue, wait_for

BROKER_URL = os.environ.get("TEST_PAYMENTS_BROKER_URL", "redis://127.0.0.1:6379/8")
SECRET_KEY = "sk_test_worker"
LEASE_SECONDS = 5  # the smallest lease settings allow


@pytest.fixture(scope="module")
def stripe_api() -> Iterator[StripeServer]:
    yield from running_stripe()


@pytest.fixture
def queue() -> Iterator[str]:
    with own_queue(BROKER_URL, "payments") as name:
        yield name


@pytest.fixture
def harbor(db: sa.Engine, monkeypatch: pytest.MonkeyPatch, stripe_api: StripeServer) -> Practice:
    settings = get_settings()
    monkeypatch.setattr(settings, "payments_mode", "stripe")
    monkeypatch.setattr(settings, "stripe_secret_key", SECRET_KEY)
    monkeypatch.setattr(settings, "stripe_api_base", stripe_api.url)
    return make_practice("Harbor Mental Health", "harbor")


def start_worker(tmp_path: Path, queue: str, server: StripeServer, n: int, *, beat: bool) -> WorkerProcess:
    env = {
        "CELERY_BROKER_URL": BROKER_URL,
        "CELERY_QUEUE": queue,
        "PAYMENTS_MODE": "stripe",
        "STRIPE_SECRET_KEY": SECRET_KEY,
        "STRIPE_API_BASE": server.url,
        "PAYMENTS_LEASE_SECONDS": str(LEASE_SECONDS),
        "PAYMENTS_SWEEP_SECONDS": "1",
    }
    worker = WorkerProcess(
        tmp_path / f"worker-{n}.log", env, beat_schedule=tmp_path / f"beat-{n}" if beat else None, name_prefix=f"pay{n}"
    )
    worker.start().wait_ready()
    return worker


def test_a_worker_killed_between_request_and_result_charges_the_fee_once(
    harbor: Practice, stripe_api: StripeServer, queue: str, tmp_path: Path
) -> None:
    server = stripe_api
    call(harbor.admin, service.update_fee_policy, changes={"late_cancel_fee_minor": 4000})
    shown = call(harbor.patient_actor, service.get_fee_policy)
    assert shown.id is not None
    call(harbor.patient_actor, service.accept_fee_policy, policy_id=shown.id, version=shown.version)
    setup = call(harbor.patient_actor, service.start_card_setup)
    server.confirm_setup(setup.setup_intent_id)
    call(harbor.patient_actor, service.confirm_card_setup, setup_intent_id=setup.setup_intent_id)
    appointment = add_appointment(harbor, utcnow() + timedelta(hours=2))

    workers: list[WorkerProcess] = []
    sweeps = r"Task payments\.sweep_tick\[[^\]]+\] succeeded"
    with app_publishing_to(BROKER_URL, queue):  # this process enqueues (after commit) to the workers' queue
        try:
            workers.append(start_worker(tmp_path, queue, server, 1, beat=False))
            server.hold_answers()  # the charge is made, its answer never reaches the first worker
            call(harbor.patient_actor, booking.cancel_appointment, appointment.id)
            (fee,) = rows(harbor, Payment)
            assert (fee.status, fee.amount_minor) == ("requested", 4000)
            wait_for("the charge request to reach Stripe", server.held.is_set, seconds=30, log=workers[0].log)
            workers[0].kill()
            server.release()
            (fee,) = rows(harbor, Payment)
            assert fee.status == "requested" and fee.lease_until is not None  # the dead worker's claim
            assert fee.provider_payment_intent_id is None  # it never read the answer
            made = [pi for pi in server.payment_intents.values() if pi["metadata"].get("payment_id") == str(fee.id)]
            assert len(made) == 1

            workers.append(start_worker(tmp_path, queue, server, 2, beat=True))
            wait_for(
                "the fee to be succeeded after recovery",
                lambda: rows(harbor, Payment)[0].status == "succeeded",
                seconds=60,
                log=workers[1].log,
            )
            # A few more sweeps: nothing is charged again.
            before = workers[1].count_in_log(sweeps)
            wait_for(
                "two more payment sweeps",
                lambda: workers[1].count_in_log(sweeps) >= before + 2,
                seconds=30,
                log=workers[1].log,
            )
        finally:
            server.release()
            for worker in workers:
                worker.kill()

    (fee,) = rows(harbor, Payment)
    requests = [
        h
        for m, p, h, _ in server.requests
        if m == "POST" and p == "/v1/payment_intents" and h.get("idempotency-key") == fee.idempotency_key
    ]
    assert len(requests) == 2  # asked twice, with the same key
    made = [pi for pi in server.payment_intents.values() if pi["metadata"].get("payment_id") == str(fee.id)]
    assert len(made) == 1  # charged once
    assert fee.provider_payment_intent_id == made[0]["id"] and made[0]["amount"] == 4000
    assert (fee.status, fee.attempt, fee.lease_until) == ("succeeded", 1, None)
