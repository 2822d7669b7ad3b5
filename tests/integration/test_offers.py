"""Waitlist offers at the service level (Celery eager): who gets a freed slot, cascade, expiry, accept, promote,
invite, and the audit trail of every transition."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlmodel import col, select

from backend.api.app import api
from backend.audit.models import AuditEvent
from backend.db import UnitOfWork
from backend.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from backend.identity.models import Patient
from backend.scheduling import booking
from backend.scheduling.models import Appointment, AppointmentStatus
from backend.tenancy.context import Actor, Role
from backend.types import utcnow
from backend.waitlist import offers, tasks
from backend.waitlist.models import EntryStatus, OfferStatus, WaitlistEntry, WaitlistOffer, WaitlistPolicy
from backend.worker import celery_app
from tests.factories import (
    Practice,
    add_appointment,
    add_availability,
    add_patient,
    add_provider,
    add_user,
    add_waitlist_entry,
    bearer,
    call,
    local_start,
    make_practice,
    rows,
)

NY = ZoneInfo("America/New_York")


# -- shared helpers (the race and worker tests use them too) ---------------------------------------------


@pytest.fixture(autouse=True)
def eager_celery() -> Iterator[None]:
    """Run tasks inline after commit (the test settings point the broker at Redis, with no worker)."""
    before = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = before


def slot_at(days: int = 2, hour: int = 10) -> datetime:
    """A session start of the default availability (every day 08:00-20:00 New York, on the hour)."""
    return local_start(days, hour, zone="America/New_York")


def window_for(start: datetime, first: str = "09:00", last: str = "12:00") -> list[dict[str, Any]]:
    return [{"weekday": start.astimezone(NY).weekday(), "start": first, "end": last}]


def patient_actor(p: Practice, patient: Patient) -> Actor:
    return Actor(tenant_id=p.tenant_id, role=Role.PATIENT, patient_id=patient.id, user_id=uuid.uuid4())


def set_waitlist_policy(p: Practice, **fields: Any) -> None:
    with UnitOfWork(p.system) as uow:
        policy = uow.session.exec(select(WaitlistPolicy).where(col(WaitlistPolicy.clinic_id).is_(None))).first()
        policy = policy or WaitlistPolicy(tenant_id=p.tenant_id)
        for key, value in fields.items():
            # None through the ORM on insert lets the column default (quiet hours 21:00-08:00) take its place, and
            # the tests that cleared quiet hours then depended on the time of day: NULL is written as NULL.
            setattr(policy, key, sa.null() if value is None else value)
        uow.session.add(policy)
        uow.commit()


def no_quiet_hours(p: Practice) -> None:
    set_waitlist_policy(p, quiet_hours_start=None, quiet_hours_end=None)



def cancel(p: Practice, appointment: Appointment) -> None:
    call(p.admin, booking.cancel_appointment, appointment.id)


def pending_offers(p: Practice) -> list[WaitlistOffer]:
    return rows(p, WaitlistOffer, status=OfferStatus.PENDING)


def entry_of(p: Practice, entry_id: uuid.UUID) -> WaitlistEntry:
    (entry,) = rows(p, WaitlistEntry, id=entry_id)
    return entry


def actions(p: Practice, entity_id: uuid.UUID | None = None) -> list[str]:
    found = rows(p, AuditEvent, entity_id=entity_id) if entity_id else rows(p, AuditEvent)
    return [e.action for e in sorted(found, key=lambda e: e.occurred_at)]


def active_at(p: Practice, start: datetime) -> list[Appointment]:
    return [
        a for a in rows(p, Appointment, start_at=start)
        if a.status in (AppointmentStatus.BOOKED, AppointmentStatus.HELD)
    ]  # fmt: skip


def scene_with_three(p: Practice, start: datetime) -> tuple[Appointment, list[tuple[Patient, WaitlistEntry]]]:
    """A booked appointment at `start` and three matching waiting entries, urgency 4 > 3 > 2."""
    add_availability(p)
    booked = add_appointment(p, start)
    people = []
    for urgency, name in ((4, "Una Urgent"), (3, "Pia Priority"), (2, "Sam Soon")):
        patient = add_patient(p, name)
        people.append((patient, add_waitlist_entry(p, patient=patient, urgency=urgency, windows=window_for(start))))
    return booked, people


@pytest.fixture
def harbor(db: sa.Engine) -> Practice:
    p = make_practice("Harbor Mental Health", "harbor")
    no_quiet_hours(p)
    return p


# -- who gets the slot -------------------------------------------------------------------------------------


def test_cancellation_offers_the_best_eligible_entry_with_reasons(harbor: Practice) -> None:
    start = slot_at()
    booked, people = scene_with_three(harbor, start)
    # Most urgent, but wants another weekday: never offered automatically.
    wrong_day = add_patient(harbor, "Wes Wrongday")
    add_waitlist_entry(harbor, patient=wrong_day, urgency=4, windows=window_for(start + timedelta(days=1)))
    # Waits at the other clinic.
    elsewhere = add_patient(harbor, "Eve Elsewhere")
    add_waitlist_entry(harbor, patient=elsewhere, urgency=4, windows=[], clinic=harbor.clinic2)

    cancel(harbor, booked)

    (offer,) = pending_offers(harbor)
    best_patient, best_entry = people[0]
    assert offer.entry_id == best_entry.id and offer.kind == "auto"
    assert offer.slot_start == start and offer.provider_id == harbor.provider.id
    assert offer.score > 0 and any("Urgent urgency" in r for r in offer.reasons)
    assert any("Fits preferred time" in r for r in offer.reasons)
    (hold,) = active_at(harbor, start)
    assert hold.id == offer.appointment_id and hold.status == AppointmentStatus.HELD
    assert hold.patient_id == best_patient.id and hold.hold_expires_at == offer.expires_at
    now = utcnow()
    assert now + timedelta(minutes=29) < offer.expires_at <= now + timedelta(minutes=30)
    entry = entry_of(harbor, best_entry.id)
    assert entry.status == EntryStatus.OFFERED and entry.version == 2
    assert "waitlist.offer_created" in actions(harbor, offer.id)
    assert "appointment.held" in actions(harbor, hold.id)
    assert "waitlist.entry_offered" in actions(harbor, best_entry.id)


def test_continuity_counts_for_patients_the_provider_already_sees(harbor: Practice) -> None:
    start = slot_at()
    add_availability(harbor)
    newcomer, regular = add_patient(harbor, "Nina New"), add_patient(harbor, "Rita Regular")
    add_appointment(harbor, utcnow() - timedelta(days=20), patient=regular, status=AppointmentStatus.COMPLETED)
    e_new = add_waitlist_entry(harbor, patient=newcomer, urgency=2, windows=window_for(start))
    e_reg = add_waitlist_entry(harbor, patient=regular, urgency=2, windows=window_for(start))
    offer = call(harbor.system, offers.offer_freed_slot, provider_id=harbor.provider.id, start=start)
    assert offer is not None and offer.entry_id == e_reg.id != e_new.id
    assert any("Already sees this provider" in r for r in offer.reasons)


def test_the_patient_who_cancels_is_never_offered_the_slot_back(harbor: Practice) -> None:
    """Regression: the canceller, waiting with the highest urgency for exactly that time, was offered her own
    slot back and held it for 30 minutes away from everyone else (PRODUCT invariant 8)."""
    start = slot_at()
    booked, people = scene_with_three(harbor, start)
    assert booked.patient_id == harbor.patient.id
    # The canceller waits for exactly that time, most urgent and longest of all.
    mine = add_waitlist_entry(harbor, urgency=4, windows=window_for(start))
    with UnitOfWork(harbor.system) as uow:
        uow.session.execute(update(WaitlistEntry).where(col(WaitlistEntry.id) == mine.id)
                            .values(created_at=utcnow() - timedelta(days=60)))  # fmt: skip
        uow.commit()
    call(harbor.patient_actor, booking.cancel_appointment, booked.id)
    (offer,) = pending_offers(harbor)
    assert offer.entry_id == people[0][1].id


def test_a_patient_who_declined_is_not_offered_the_slot_again_through_another_entry(harbor: Practice) -> None:
    start = slot_at()
    booked, people = scene_with_three(harbor, start)
    una, una_entry = people[0]
    # Una also waits for anyone at the clinic: a second entry that fits the same slot.
    add_waitlist_entry(harbor, patient=una, any_provider=True, urgency=4, windows=window_for(start))
    cancel(harbor, booked)
    (first,) = pending_offers(harbor)
    assert first.entry_id == una_entry.id
    call(patient_actor(harbor, una), offers.decline_offer, first.id)
    (second,) = pending_offers(harbor)
    assert second.entry_id == people[1][1].id  # Pia, not Una's other entry


def test_no_offer_inside_the_cutoff_or_when_auto_offer_is_off(harbor: Practice) -> None:
    start = slot_at(days=1)
    add_availability(harbor)
    add_waitlist_entry(harbor, windows=[])
    set_waitlist_policy(harbor, cutoff_minutes_before_slot=3 * 24 * 60)
    assert call(harbor.system, offers.offer_freed_slot, provider_id=harbor.provider.id, start=start) is None
    set_waitlist_policy(harbor, cutoff_minutes_before_slot=60, auto_offer=False)
    assert call(harbor.system, offers.offer_freed_slot, provider_id=harbor.provider.id, start=start) is None
    set_waitlist_policy(harbor, auto_offer=True)
    assert call(harbor.system, offers.offer_freed_slot, provider_id=harbor.provider.id, start=start) is not None
    assert rows(harbor, WaitlistOffer) and len(pending_offers(harbor)) == 1


def test_no_offer_for_a_taken_slot_or_a_patient_busy_then(harbor: Practice) -> None:
    start = slot_at()
    add_availability(harbor)
    busy = add_patient(harbor, "Bea Busy")
    entry = add_waitlist_entry(harbor, patient=busy, windows=[])
    add_appointment(harbor, start + timedelta(minutes=10), patient=busy, provider=harbor.provider,
                    minutes=20)  # fmt: skip
    # The slot overlaps the patient's own booking (and so the provider's): nobody is offered it.
    assert call(harbor.system, offers.offer_freed_slot, provider_id=harbor.provider.id, start=start) is None
    assert entry_of(harbor, entry.id).status == EntryStatus.WAITING


def test_quiet_hours_start_the_clock_when_they_end(harbor: Practice) -> None:
    start = slot_at(days=3)
    add_availability(harbor)
    add_waitlist_entry(harbor, windows=[])
    local_now = utcnow().astimezone(NY)
    quiet_start = (local_now - timedelta(hours=1)).time().replace(second=0, microsecond=0)
    quiet_end = (local_now + timedelta(hours=2)).time().replace(second=0, microsecond=0)
    set_waitlist_policy(harbor, quiet_hours_start=quiet_start, quiet_hours_end=quiet_end, offer_hold_minutes=45)
    offer = call(harbor.system, offers.offer_freed_slot, provider_id=harbor.provider.id, start=start)
    assert offer is not None
    quiet_over = (local_now + timedelta(hours=2)).replace(second=0, microsecond=0)
    assert offer.expires_at == (quiet_over + timedelta(minutes=45)).astimezone(UTC)


# -- cascade, expiry, accept -------------------------------------------------------------------------------


def test_decline_cascades_to_the_next_and_never_back_to_the_decliner(harbor: Practice) -> None:
    start = slot_at()
    booked, people = scene_with_three(harbor, start)
    cancel(harbor, booked)
    first = pending_offers(harbor)[0]
    declined = call(patient_actor(harbor, people[0][0]), offers.decline_offer, first.id)
    assert declined.status == OfferStatus.DECLINED and declined.responded_at is not None
    assert entry_of(harbor, people[0][1].id).status == EntryStatus.WAITING
    (second,) = pending_offers(harbor)
    assert second.entry_id == people[1][1].id
    (hold,) = active_at(harbor, start)
    assert hold.patient_id == people[1][0].id
    call(patient_actor(harbor, people[1][0]), offers.decline_offer, second.id)
    (third,) = pending_offers(harbor)
    assert third.entry_id == people[2][1].id
    call(patient_actor(harbor, people[2][0]), offers.decline_offer, third.id)
    # Everyone declined this slot: nobody is offered it again.
    assert pending_offers(harbor) == []
    assert call(harbor.system, offers.offer_freed_slot, provider_id=harbor.provider.id, start=start) is None
    assert active_at(harbor, start) == []
    assert "waitlist.offer_declined" in actions(harbor, first.id)
    assert "waitlist.entry_returned" in actions(harbor, people[0][1].id)
    with pytest.raises(Conflict, match="declined"):
        call(patient_actor(harbor, people[0][0]), offers.decline_offer, first.id)


def test_decline_expires_the_entry_when_the_policy_says_so(harbor: Practice) -> None:
    start = slot_at()
    booked, people = scene_with_three(harbor, start)
    set_waitlist_policy(harbor, expire_entry_on_decline=True)
    cancel(harbor, booked)
    first = pending_offers(harbor)[0]
    call(patient_actor(harbor, people[0][0]), offers.decline_offer, first.id)
    assert entry_of(harbor, people[0][1].id).status == EntryStatus.EXPIRED
    assert "waitlist.entry_expired" in actions(harbor, people[0][1].id)


def test_expiry_advances_each_offer_once_and_cascades(harbor: Practice) -> None:
    start = slot_at()
    booked, people = scene_with_three(harbor, start)
    cancel(harbor, booked)
    first = pending_offers(harbor)[0]
    later = first.expires_at + timedelta(microseconds=1)
    assert call(harbor.system, offers.expire_due_offers, now=first.expires_at - timedelta(seconds=1)) == []
    assert call(harbor.system, offers.expire_due_offers, now=later) == [first.id]
    # The cascade offered the slot to the second (its expiry lies after `later`): a second sweep at the same
    # instant changes nothing.
    assert call(harbor.system, offers.expire_due_offers, now=later) == []
    assert actions(harbor, first.id).count("waitlist.offer_expired") == 1
    (expired,) = rows(harbor, WaitlistOffer, id=first.id)
    assert expired.status == OfferStatus.EXPIRED
    (hold,) = rows(harbor, Appointment, id=first.appointment_id)
    assert hold.status == AppointmentStatus.CANCELLED
    assert entry_of(harbor, people[0][1].id).status == EntryStatus.WAITING
    (second,) = pending_offers(harbor)
    assert second.entry_id == people[1][1].id


def test_accept_books_exactly_one_appointment(harbor: Practice) -> None:
    start = slot_at()
    booked, people = scene_with_three(harbor, start)
    cancel(harbor, booked)
    offer = pending_offers(harbor)[0]
    patient, entry = people[0]
    appointment = call(patient_actor(harbor, patient), offers.accept_offer, offer.id)
    assert appointment.id == offer.appointment_id and appointment.status == AppointmentStatus.BOOKED
    assert appointment.hold_expires_at is None and appointment.patient_id == patient.id
    (only,) = active_at(harbor, start)
    assert only.id == appointment.id
    assert entry_of(harbor, entry.id).status == EntryStatus.BOOKED
    (accepted,) = rows(harbor, WaitlistOffer, id=offer.id)
    assert accepted.status == OfferStatus.ACCEPTED
    assert "waitlist.offer_accepted" in actions(harbor, offer.id)
    assert "appointment.booked" in actions(harbor, appointment.id)
    assert "waitlist.entry_booked" in actions(harbor, entry.id)
    with pytest.raises(Conflict, match="already accepted"):
        call(patient_actor(harbor, patient), offers.accept_offer, offer.id)
    assert len(active_at(harbor, start)) == 1


def test_accept_after_expiry_is_a_conflict(harbor: Practice) -> None:
    start = slot_at()
    booked, people = scene_with_three(harbor, start)
    cancel(harbor, booked)
    offer = pending_offers(harbor)[0]
    with UnitOfWork(harbor.system) as uow:  # run out, not yet swept
        uow.session.execute(
            update(WaitlistOffer).where(col(WaitlistOffer.id) == offer.id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )  # fmt: skip
        uow.commit()
    with pytest.raises(Conflict, match="This offer has expired") as closed:
        call(patient_actor(harbor, people[0][0]), offers.accept_offer, offer.id)
    assert closed.value.code == "offer_closed"
    call(harbor.system, offers.expire_due_offers)
    with pytest.raises(Conflict, match="This offer has expired"):
        call(patient_actor(harbor, people[0][0]), offers.accept_offer, offer.id)
    assert all(a.patient_id != people[0][0].id for a in active_at(harbor, start))


def test_only_the_owner_answers_an_offer(harbor: Practice) -> None:
    start = slot_at()
    booked, people = scene_with_three(harbor, start)
    cancel(harbor, booked)
    offer = pending_offers(harbor)[0]
    for fn in (offers.accept_offer, offers.decline_offer):
        with pytest.raises(NotFound):
            call(patient_actor(harbor, people[1][0]), fn, offer.id)
        for staff in (harbor.doctor, harbor.admin):
            with pytest.raises(PermissionDenied):
                call(staff, fn, offer.id)
    assert pending_offers(harbor)[0].id == offer.id


def test_a_failing_audit_write_rolls_the_whole_accept_back(
    harbor: Practice, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = slot_at()
    booked, people = scene_with_three(harbor, start)
    cancel(harbor, booked)
    offer = pending_offers(harbor)[0]
    real = offers.record

    def failing(actor: Actor, uow: UnitOfWork, **kwargs: Any) -> Any:
        if kwargs["action"] == "waitlist.entry_booked":
            raise RuntimeError("audit store down")
        return real(actor, uow, **kwargs)

    monkeypatch.setattr(offers, "record", failing)
    with pytest.raises(RuntimeError):
        call(patient_actor(harbor, people[0][0]), offers.accept_offer, offer.id)
    (still,) = rows(harbor, WaitlistOffer, id=offer.id)
    assert still.status == OfferStatus.PENDING
    assert active_at(harbor, start)[0].status == AppointmentStatus.HELD
    assert entry_of(harbor, people[0][1].id).status == EntryStatus.OFFERED
    assert "waitlist.offer_accepted" not in actions(harbor, offer.id)


def test_withdraw_on_leave_releases_the_hold_and_cascades(harbor: Practice) -> None:
    start = slot_at()
    booked, people = scene_with_three(harbor, start)
    cancel(harbor, booked)
    offer = pending_offers(harbor)[0]
    with UnitOfWork(harbor.admin) as uow:
        entry = uow.session.get(WaitlistEntry, people[0][1].id)
        assert entry is not None
        offers.withdraw_live_offer(harbor.admin, uow, entry)
        entry.status = EntryStatus.REMOVED
        uow.session.add(entry)
        uow.commit()
    (withdrawn,) = rows(harbor, WaitlistOffer, id=offer.id)
    assert withdrawn.status == OfferStatus.WITHDRAWN
    assert entry_of(harbor, people[0][1].id).status == EntryStatus.REMOVED
    (next_offer,) = pending_offers(harbor)
    assert next_offer.entry_id == people[1][1].id
    assert "waitlist.offer_withdrawn" in actions(harbor, offer.id)
    assert "appointment.hold_released" in actions(harbor, offer.appointment_id)


def test_reschedule_frees_the_old_slot_for_the_waitlist(harbor: Practice) -> None:
    start = slot_at()
    booked, people = scene_with_three(harbor, start)
    call(harbor.admin, booking.reschedule_appointment, booked.id, new_start=slot_at(days=4))
    (offer,) = pending_offers(harbor)
    assert offer.slot_start == start and offer.entry_id == people[0][1].id


# -- promote and invite ------------------------------------------------------------------------------------


def test_promote_offers_the_best_matching_free_slot(harbor: Practice) -> None:
    add_availability(harbor)
    target = slot_at(days=5)
    earliest = target.astimezone(NY).date()
    entry = add_waitlist_entry(harbor, windows=window_for(target, "10:00", "11:00"), earliest=earliest)
    offer = call(harbor.doctor, offers.promote_entry, entry.id)
    assert offer.kind == "promote" and offer.slot_start == target
    assert "Promoted by staff" in offer.reasons
    assert entry_of(harbor, entry.id).status == EntryStatus.OFFERED
    with pytest.raises(Conflict, match="live offer"):
        call(harbor.admin, offers.promote_entry, entry.id)
    assert "waitlist.offer_created" in actions(harbor, offer.id)


def test_promote_without_a_matching_slot_is_422(harbor: Practice) -> None:
    add_availability(harbor)
    entry = add_waitlist_entry(harbor, windows=[{"weekday": 0, "start": "22:00", "end": "23:00"}])
    with pytest.raises(ValidationFailed, match="No free slot matches"):
        call(harbor.admin, offers.promote_entry, entry.id)
    assert rows(harbor, WaitlistOffer) == []


def test_promote_and_invite_refuse_patients_and_other_doctors_entries(harbor: Practice) -> None:
    add_availability(harbor)
    entry = add_waitlist_entry(harbor, windows=[])
    with pytest.raises(PermissionDenied):
        call(harbor.patient_actor, offers.promote_entry, entry.id)
    stranger = Actor(tenant_id=harbor.tenant_id, role=Role.DOCTOR, user_id=uuid.uuid4(), provider_id=uuid.uuid4())
    with pytest.raises(NotFound):
        call(stranger, offers.promote_entry, entry.id)
    with pytest.raises(NotFound):
        call(stranger, offers.invite_entry, entry.id, start=slot_at())


def test_invite_offers_a_chosen_slot_even_outside_preferences(harbor: Practice) -> None:
    add_availability(harbor)
    entry = add_waitlist_entry(harbor, windows=[{"weekday": 0, "start": "22:00", "end": "23:00"}])
    start = slot_at(days=3, hour=15)
    offer = call(harbor.doctor, offers.invite_entry, entry.id, start=start)
    assert offer.kind == "invite" and offer.slot_start == start
    assert any("Invited although outside the preferred times" in r for r in offer.reasons)
    other = add_waitlist_entry(harbor, patient=add_patient(harbor, "Otto"), windows=[])
    with pytest.raises(Conflict):
        call(harbor.admin, offers.invite_entry, other.id, start=start)  # held by the first invitation
    with pytest.raises(ValidationFailed):
        call(harbor.admin, offers.invite_entry, other.id, start=start + timedelta(minutes=7))
    with pytest.raises(ValidationFailed):
        call(harbor.admin, offers.invite_entry, other.id, start=utcnow() - timedelta(hours=1))


def test_list_offers_patient_sees_own_history_staff_the_practice(harbor: Practice) -> None:
    start = slot_at()
    booked, people = scene_with_three(harbor, start)
    cancel(harbor, booked)
    first = pending_offers(harbor)[0]
    call(patient_actor(harbor, people[0][0]), offers.decline_offer, first.id)
    mine = call(patient_actor(harbor, people[0][0]), offers.list_offers)
    assert [o.id for o in mine] == [first.id]
    assert len(call(harbor.admin, offers.list_offers)) == 2
    assert len(call(harbor.doctor, offers.list_offers, entry_id=people[1][1].id)) == 1
    assert call(harbor.patient_actor, offers.list_offers) == []


def test_a_doctor_sees_offers_only_on_entries_they_may_see(harbor: Practice) -> None:
    """Regression (pen test): GET /offers as one doctor listed offers on a colleague's entries, whose entries
    themselves answered 404. Offers are scoped exactly like entries, at the service and over REST."""
    colleague = add_provider(harbor, "Cole Colleague")
    add_availability(harbor, provider=colleague)
    theirs = add_waitlist_entry(harbor, provider=colleague, windows=[])
    offer = call(harbor.admin, offers.invite_entry, theirs.id, start=slot_at(days=3, hour=15), provider_id=colleague.id)
    mine = add_waitlist_entry(harbor, patient=add_patient(harbor, "Mia Mine"), windows=[])
    add_availability(harbor)
    my_offer = call(harbor.admin, offers.invite_entry, mine.id, start=slot_at(days=3, hour=11))

    assert [o.id for o in call(harbor.doctor, offers.list_offers)] == [my_offer.id]
    assert call(harbor.doctor, offers.list_offers, entry_id=theirs.id) == []
    assert {o.id for o in call(harbor.admin, offers.list_offers)} == {offer.id, my_offer.id}
    with TestClient(api) as client:
        headers = bearer(client, harbor.doctor_user.email)
        assert client.get(f"/api/v1/waitlists/{theirs.id}", headers=headers).status_code == 404
        listed = client.get("/api/v1/offers", headers=headers)
        assert listed.status_code == 200 and [o["id"] for o in listed.json()] == [str(my_offer.id)]
        filtered = client.get("/api/v1/offers", params={"entry_id": str(theirs.id)}, headers=headers)
        assert filtered.status_code == 200 and filtered.json() == []


# -- entry expiry and reconfirmation ----------------------------------------------------------------------


def test_expire_entries_tick_expires_and_asks_to_reconfirm(harbor: Practice) -> None:
    old = add_waitlist_entry(harbor, windows=[])
    stale = add_waitlist_entry(harbor, patient=add_patient(harbor, "Sid Stale"), windows=[])
    fresh = add_waitlist_entry(harbor, patient=add_patient(harbor, "Fay Fresh"), windows=[])
    with UnitOfWork(harbor.system) as uow:
        uow.session.execute(update(WaitlistEntry).where(col(WaitlistEntry.id) == old.id)
                            .values(expires_at=utcnow() - timedelta(minutes=1)))  # fmt: skip
        uow.session.execute(update(WaitlistEntry).where(col(WaitlistEntry.id) == stale.id)
                            .values(last_confirmed_at=utcnow() - timedelta(days=31)))  # fmt: skip
        uow.commit()
    assert tasks.expire_entries_tick() == (1, 1)
    assert tasks.expire_entries_tick() == (0, 0)
    assert entry_of(harbor, old.id).status == EntryStatus.EXPIRED
    assert entry_of(harbor, stale.id).reconfirm_requested_at is not None
    assert entry_of(harbor, fresh.id).reconfirm_requested_at is None
    assert "waitlist.entry_expired" in actions(harbor, old.id)
    assert "waitlist.reconfirm_requested" in actions(harbor, stale.id)


def test_open_slots_sweep_offers_a_slot_whose_enqueue_was_lost(
    harbor: Practice, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = slot_at()
    booked, people = scene_with_three(harbor, start)
    monkeypatch.setattr(tasks.offer_freed_slot_task, "delay", lambda *a: (_ for _ in ()).throw(ConnectionError("down")))
    cancel(harbor, booked)  # the enqueue fails (logged); the cancellation stands
    assert pending_offers(harbor) == []
    assert tasks.offer_open_slots_tick() == 1
    (offer,) = pending_offers(harbor)
    assert offer.entry_id == people[0][1].id
    assert tasks.offer_open_slots_tick() == 0  # it has a live offer now


def test_expire_offers_tick_sweeps_every_tenant(harbor: Practice) -> None:
    summit = make_practice("Summit Counseling", "summit")
    no_quiet_hours(summit)
    found = []
    for p in (harbor, summit):
        start = slot_at()
        booked, _ = scene_with_three(p, start)
        cancel(p, booked)
        (offer,) = pending_offers(p)
        with UnitOfWork(p.system) as uow:
            uow.session.execute(update(WaitlistOffer).where(col(WaitlistOffer.id) == offer.id)
                                .values(expires_at=utcnow() - timedelta(seconds=1)))  # fmt: skip
            uow.commit()
        found.append(offer.id)
    assert tasks.expire_offers_tick() == 2
    for p, offer_id in zip((harbor, summit), found, strict=True):
        (offer,) = rows(p, WaitlistOffer, id=offer_id)
        assert offer.status == OfferStatus.EXPIRED
        assert len(pending_offers(p)) == 1  # cascaded to the next in that practice


# -- REST ---------------------------------------------------------------------------------------------------


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(api) as c:
        yield c


def test_rest_promote_invite_accept_decline_list(harbor: Practice, client: TestClient) -> None:
    start = slot_at()
    booked, people = scene_with_three(harbor, start)
    admin = bearer(client, harbor.emails["admin"])
    doctor = bearer(client, harbor.emails["doctor"])
    users = [add_user(harbor, f"p{i}@harbor.test", Role.PATIENT, patient_id=pt.id) for i, (pt, _) in enumerate(people)]
    auth = [bearer(client, u.email) for u in users]

    r = client.post(f"/api/v1/appointments/{booked.id}/cancel", json={}, headers=admin)
    assert r.status_code == 200, r.text
    listed = client.get("/api/v1/offers", headers=auth[0]).json()
    assert len(listed) == 1 and listed[0]["status"] == "pending" and listed[0]["reasons"]
    offer_id = listed[0]["id"]
    assert client.post(f"/api/v1/offers/{offer_id}/accept", headers=auth[1]).status_code == 404
    assert client.post(f"/api/v1/offers/{offer_id}/accept", headers=doctor).status_code == 403
    assert client.post(f"/api/v1/offers/{uuid.uuid4()}/accept", headers=auth[0]).status_code == 404
    r = client.post(f"/api/v1/offers/{offer_id}/decline", headers=auth[0])
    assert r.status_code == 200 and r.json()["status"] == "declined"
    second = client.get("/api/v1/offers", headers=auth[1]).json()[0]
    r = client.post(f"/api/v1/offers/{second['id']}/accept", headers=auth[1])
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "booked" and r.json()["patient_id"] == str(people[1][0].id)
    r = client.post(f"/api/v1/offers/{second['id']}/accept", headers=auth[1])
    assert r.status_code == 409
    assert len(client.get("/api/v1/offers", headers=admin).json()) == 2

    third_entry = people[2][1].id
    r = client.post(f"/api/v1/waitlists/{third_entry}/invite", json={"start": slot_at(days=3).isoformat()},
                    headers=doctor)  # fmt: skip
    assert r.status_code == 201, r.text
    assert r.json()["kind"] == "invite"
    r = client.post(f"/api/v1/waitlists/{third_entry}/promote", headers=admin)
    assert r.status_code == 409
    r = client.post(f"/api/v1/waitlists/{people[0][1].id}/promote", headers=auth[0])
    assert r.status_code == 403
    r = client.post(f"/api/v1/waitlists/{people[0][1].id}/promote", headers=admin)
    assert r.status_code == 201, r.text
    assert r.json()["kind"] == "promote"
    r = client.post(f"/api/v1/waitlists/{people[0][1].id}/invite", json={"start": "2030-01-01T10:00:00"},
                    headers=admin)  # fmt: skip
    assert r.status_code in (409, 422)
    r = client.post(f"/api/v1/waitlists/{uuid.uuid4()}/promote", headers=admin)
    assert r.status_code == 404
