"""Offers under concurrency (threads against PostgreSQL): never two appointments, each offer advanced once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import update
from sqlmodel import col

from backend.audit.models import AuditEvent
from backend.db import UnitOfWork
from backend.errors import DomainError
from backend.scheduling.models import Appointment, AppointmentStatus
from backend.types import utcnow
from backend.waitlist import offers
from backend.waitlist.models import EntryStatus, OfferStatus, WaitlistEntry, WaitlistOffer
from tests.factories import add_availability, add_patient, add_waitlist_entry, make_practice, rows
from tests.integration.test_offers import (  # noqa: F401 - eager_celery is an autouse fixture
    active_at,
    call,
    eager_celery,
    no_quiet_hours,
    patient_actor,
    slot_at,
)


def _together(*fns: Callable[[], Any]) -> list[Any]:
    """Start every function at the same moment on its own thread; return results or the exceptions raised."""
    barrier = threading.Barrier(len(fns))
    results: list[Any] = [None] * len(fns)

    def run(i: int, fn: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            results[i] = fn()
        except Exception as exc:  # noqa: BLE001 - the caller inspects what each thread raised
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def test_accept_racing_expiry_never_books_twice(db: sa.Engine) -> None:
    p = make_practice("Harbor Mental Health", "harbor")
    no_quiet_hours(p)
    add_availability(p)
    outcomes = {"accepted": 0, "expired": 0}
    for i in range(16):
        start = slot_at(days=2 + i // 10, hour=8 + i % 10)
        patient = add_patient(p, f"Racer {i}")
        entry = add_waitlist_entry(p, patient=patient, windows=[])
        offer = call(p.admin, offers.invite_entry, entry.id, start=start)
        # The hold is about to run out: the accept and the sweep (which sees it as due) race.
        with UnitOfWork(p.system) as uow:
            uow.session.execute(update(WaitlistOffer).where(col(WaitlistOffer.id) == offer.id)
                                .values(expires_at=utcnow() + timedelta(milliseconds=200)))  # fmt: skip
            uow.commit()
        accept, sweep = _together(
            lambda pt=patient, o=offer: call(patient_actor(p, pt), offers.accept_offer, o.id),
            lambda: call(p.system, offers.expire_due_offers, now=utcnow() + timedelta(hours=1)),
        )
        (final,) = rows(p, WaitlistOffer, id=offer.id)
        booked = [a for a in active_at(p, start) if a.status == AppointmentStatus.BOOKED]
        assert len(active_at(p, start)) <= 1
        if isinstance(accept, Appointment):
            assert final.status == OfferStatus.ACCEPTED and offer.id not in sweep
            assert [a.id for a in booked] == [accept.id]
            assert rows(p, WaitlistEntry, id=entry.id)[0].status == EntryStatus.BOOKED
            outcomes["accepted"] += 1
        else:
            assert isinstance(accept, DomainError), accept
            assert final.status == OfferStatus.EXPIRED and offer.id in sweep
            assert booked == []
            outcomes["expired"] += 1
        audit = [e.action for e in rows(p, AuditEvent, entity_id=offer.id)]
        assert audit.count("waitlist.offer_accepted") + audit.count("waitlist.offer_expired") == 1
    print(f"accept vs expiry: {outcomes}")
    assert sum(outcomes.values()) == 16


def test_two_offers_for_one_slot_then_two_accepts_book_once(db: sa.Engine) -> None:
    p = make_practice("Harbor Mental Health", "harbor")
    no_quiet_hours(p)
    add_availability(p)
    for i in range(8):
        start = slot_at(days=3, hour=8 + i)
        a, b = add_patient(p, f"A{i}"), add_patient(p, f"B{i}")
        ea, eb = add_waitlist_entry(p, patient=a, windows=[]), add_waitlist_entry(p, patient=b, windows=[])
        made = _together(
            lambda ea=ea, start=start: call(p.admin, offers.invite_entry, ea.id, start=start),
            lambda eb=eb, start=start: call(p.doctor, offers.invite_entry, eb.id, start=start),
        )
        created = [m for m in made if isinstance(m, WaitlistOffer)]
        assert len(created) == 1, made  # one live offer per slot
        assert all(isinstance(m, DomainError) for m in made if not isinstance(m, WaitlistOffer))
        # The loser's entry is untouched.
        loser = eb if created[0].entry_id == ea.id else ea
        assert rows(p, WaitlistEntry, id=loser.id)[0].status == EntryStatus.WAITING
        # Both patients press accept on "the" offer at once: only its owner books, once.
        results = _together(
            lambda a=a, o=created[0]: call(patient_actor(p, a), offers.accept_offer, o.id),
            lambda b=b, o=created[0]: call(patient_actor(p, b), offers.accept_offer, o.id),
        )
        assert sum(isinstance(r, Appointment) for r in results) == 1
        (only,) = active_at(p, start)
        assert only.status == AppointmentStatus.BOOKED


def test_two_expiry_sweeps_at_once_expire_each_offer_once(db: sa.Engine) -> None:
    p = make_practice("Harbor Mental Health", "harbor")
    no_quiet_hours(p)
    add_availability(p)
    ids = []
    for i in range(12):
        entry = add_waitlist_entry(p, patient=add_patient(p, f"Sweep {i}"), windows=[])
        ids.append(call(p.admin, offers.invite_entry, entry.id, start=slot_at(days=4 + i // 10, hour=8 + i % 10)).id)
    with UnitOfWork(p.system) as uow:
        uow.session.execute(update(WaitlistOffer).where(col(WaitlistOffer.id).in_(ids))
                            .values(expires_at=utcnow() - timedelta(seconds=1)))  # fmt: skip
        uow.commit()
    for _ in range(3):
        first, second = _together(
            lambda: call(p.system, offers.expire_due_offers, limit=7),
            lambda: call(p.system, offers.expire_due_offers, limit=7),
        )
        assert not isinstance(first, Exception) and not isinstance(second, Exception), (first, second)
        assert not set(first) & set(second)
    expired = [o for o in rows(p, WaitlistOffer) if o.id in ids]
    assert {o.status for o in expired} == {OfferStatus.EXPIRED}
    audit = [e for e in rows(p, AuditEvent) if e.action == "waitlist.offer_expired"]
    assert sorted(e.entity_id for e in audit) == sorted(ids)  # exactly one row per offer
    released = [e for e in rows(p, AuditEvent) if e.action == "appointment.hold_released"]
    assert len(released) == len(ids)
