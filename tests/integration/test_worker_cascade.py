"""The acceptance test: a real Celery worker (with embedded beat) drives the offer cascade end to end.

cancel -> the best of three waiting entries is offered (within 2 s) -> they decline -> the second is offered ->
the second's hold runs out and the beat tick expires it -> the third is offered -> the third accepts -> exactly one
appointment, entry booked, every step audited. Conditions are polled in the database with deadlines.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import update
from sqlmodel import col

from backend.audit.models import AuditEvent
from backend.db import UnitOfWork
from backend.scheduling.models import AppointmentStatus
from backend.settings import PROJECT_ROOT
from backend.types import utcnow
from backend.waitlist import offers
from backend.waitlist.models import EntryStatus, OfferStatus, WaitlistEntry, WaitlistOffer
from backend.worker import celery_app
from tests.factories import make_practice, rows
from tests.integration.test_offers import (
    active_at,
    call,
    cancel,
    no_quiet_hours,
    patient_actor,
    pending_offers,
    scene_with_three,
    slot_at,
)
from tests.worker_process import reset_producer_pools as _reset_producer_pools
from tests.worker_process import wait_for

BROKER_URL = os.environ.get("TEST_CELERY_BROKER_URL", "redis://127.0.0.1:6379/7")


@pytest.fixture
def worker(db: sa.Engine, tmp_path: Path) -> Iterator[Path]:
    """A real `celery worker -B` subprocess on its own Redis database; this process sends through it too."""
    # A queue of this run's own: other runs (a developer's, CI) may share the broker database.
    queue = f"cascade-{uuid.uuid4().hex[:12]}"
    log = tmp_path / "worker.log"
    env = {
        **os.environ,
        "CELERY_BROKER_URL": BROKER_URL,
        "DATABASE_URL": os.environ["DATABASE_URL"],
        "REDIS_URL": os.environ["REDIS_URL"],
        "CELERY_EAGER": "0",
        "CELERY_QUEUE": queue,
    }
    name = f"cascade-{uuid.uuid4().hex[:8]}@%h"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "backend.worker", "worker", "-B", "-s", str(tmp_path / "beat"),
             "-P", "threads", "-c", "4", "-l", "info", "-n", name, "--without-gossip", "--without-mingle"],
            cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    saved = {k: celery_app.conf[k] for k in ("broker_url", "task_always_eager", "task_default_queue")}
    celery_app.conf.broker_url = BROKER_URL
    celery_app.conf.task_always_eager = False
    celery_app.conf.task_default_queue = queue
    _reset_producer_pools()
    try:
        wait_for("the worker to answer a ping",
                 lambda: proc.poll() is None and celery_app.control.ping(timeout=0.3), seconds=45, log=log)  # fmt: skip
        yield log
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        for key, value in saved.items():
            celery_app.conf[key] = value
        _reset_producer_pools()


def test_cascade_through_a_real_worker_and_beat(worker: Path) -> None:
    p = make_practice("Harbor Mental Health", "harbor")
    no_quiet_hours(p)
    start = slot_at()
    booked, people = scene_with_three(p, start)
    (first_patient, first_entry), (_second_patient, second_entry), (third_patient, third_entry) = people

    def offer_to(entry: WaitlistEntry) -> Callable[[], WaitlistOffer | None]:
        def probe() -> WaitlistOffer | None:
            found = [o for o in pending_offers(p) if o.entry_id == entry.id]
            return found[0] if found else None

        return probe

    latencies: dict[str, float] = {}

    # 1. A cancellation offers the slot to the best of the three, through the broker and the worker.
    t0 = time.monotonic()
    cancel(p, booked)
    first = wait_for("the first offer", offer_to(first_entry), seconds=2, log=worker)
    latencies["cancel -> offer"] = time.monotonic() - t0

    # 2. They decline: the worker offers the slot to the second.
    t0 = time.monotonic()
    call(patient_actor(p, first_patient), offers.decline_offer, first.id)
    second = wait_for("the second offer", offer_to(second_entry), seconds=5, log=worker)
    latencies["decline -> next offer"] = time.monotonic() - t0

    # 3. The second's hold runs out: beat's expire tick (every 5 s) expires it and the third is offered.
    with UnitOfWork(p.system) as uow:
        uow.session.execute(update(WaitlistOffer).where(col(WaitlistOffer.id) == second.id)
                            .values(expires_at=utcnow() - timedelta(seconds=1)))  # fmt: skip
        uow.commit()
    t0 = time.monotonic()
    third = wait_for("the third offer", offer_to(third_entry), seconds=15, log=worker)
    latencies["hold expired -> next offer (beat tick every 5 s)"] = time.monotonic() - t0

    # 4. The third accepts: exactly one appointment, for them; their entry is booked.
    appointment = call(patient_actor(p, third_patient), offers.accept_offer, third.id)
    (only,) = active_at(p, start)
    assert only.id == appointment.id and only.status == AppointmentStatus.BOOKED
    assert only.patient_id == third_patient.id
    assert rows(p, WaitlistEntry, id=third_entry.id)[0].status == EntryStatus.BOOKED
    assert rows(p, WaitlistEntry, id=first_entry.id)[0].status == EntryStatus.WAITING
    assert rows(p, WaitlistEntry, id=second_entry.id)[0].status == EntryStatus.WAITING
    statuses = {o.entry_id: o.status for o in rows(p, WaitlistOffer)}
    assert statuses == {
        first_entry.id: OfferStatus.DECLINED,
        second_entry.id: OfferStatus.EXPIRED,
        third_entry.id: OfferStatus.ACCEPTED,
    }
    assert pending_offers(p) == []

    # 5. The audit trail has every step.
    trail = [(e.action, e.entity_id) for e in sorted(rows(p, AuditEvent), key=lambda e: e.occurred_at)]
    expected: list[tuple[str, Any]] = [
        ("appointment.cancelled", booked.id),
        ("waitlist.offer_created", first.id),
        ("waitlist.offer_declined", first.id),
        ("appointment.hold_released", first.appointment_id),
        ("waitlist.entry_returned", first_entry.id),
        ("waitlist.offer_created", second.id),
        ("waitlist.offer_expired", second.id),
        ("appointment.hold_released", second.appointment_id),
        ("waitlist.entry_returned", second_entry.id),
        ("waitlist.offer_created", third.id),
        ("waitlist.offer_accepted", third.id),
        ("appointment.booked", appointment.id),
        ("waitlist.entry_booked", third_entry.id),
    ]
    for step in expected:
        assert trail.count(step) == 1, (step, trail)
    positions = [trail.index(step) for step in expected]
    created = [trail.index(s) for s in expected if s[0] == "waitlist.offer_created"]
    assert created == sorted(created)
    assert positions[0] < created[0]
    print("\ncascade latency: " + ", ".join(f"{k}: {v * 1000:.0f} ms" for k, v in latencies.items()))
    assert latencies["cancel -> offer"] < 2.0
