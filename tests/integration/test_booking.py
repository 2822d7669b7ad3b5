"""The guarded booking path at the service level, and PostgreSQL's exclusion constraints underneath it."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from backend.audit.models import AuditEvent
from backend.db import UnitOfWork
from backend.errors import Conflict, DomainError, NotFound, PermissionDenied, ValidationFailed
from backend.identity.models import Provider
from backend.scheduling import booking
from backend.scheduling.booking import PATIENT_BUSY, SLOT_TAKEN, constraint_name, sqlstate
from backend.scheduling.models import Appointment, AppointmentStatus
from backend.scheduling.service import list_slots
from backend.tenancy.context import Actor, Role
from backend.types import utcnow
from tests.factories import (
    Practice,
    add_appointment,
    add_availability,
    add_patient,
    add_provider,
    add_time_off,
    local_start,
    make_practice,
    rows,
    set_booking_policy,
)


@pytest.fixture
def harbor(db: sa.Engine) -> Practice:
    """A practice whose doctor works every day 08:00-20:00 New York time, sessions on the hour."""
    p = make_practice("Harbor Mental Health", "harbor")
    add_availability(p)
    return p


@pytest.fixture
def summit(db: sa.Engine) -> Practice:
    p = make_practice("Summit Counseling", "summit", zones=("America/Denver", "Asia/Tokyo"))
    add_availability(p)
    return p


def run(actor: Actor, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a service function in the actor's own unit of work and commit."""
    with UnitOfWork(actor) as uow:
        result = fn(actor, uow, *args, **kwargs)
        uow.commit()
        return result


def book(p: Practice, actor: Actor | None = None, start: datetime | None = None, **kwargs: Any) -> Appointment:
    kwargs.setdefault("provider_id", p.provider.id)
    result = run(actor or p.patient_actor, booking.book_appointment, start=start or local_start(3, 10), **kwargs)
    return result.appointment  # type: ignore[no-any-return]


def patient_actor(p: Practice, name: str = "Second Patient") -> Actor:
    patient = add_patient(p, name)
    return Actor(tenant_id=p.tenant_id, role=Role.PATIENT, user_id=uuid.uuid4(), patient_id=patient.id)


def footprint(p: Practice) -> tuple[int, int]:
    """Appointments and audit events of the practice: what a refused request must not change."""
    return len(rows(p, Appointment)), len(rows(p, AuditEvent))


def reload(p: Practice, appointment_id: uuid.UUID) -> Appointment:
    (found,) = rows(p, Appointment, id=appointment_id)
    return found  # type: ignore[no-any-return]


def actions(p: Practice, entity_id: uuid.UUID) -> list[str]:
    return [e.action for e in rows(p, AuditEvent, entity_id=entity_id)]


def expire(p: Practice, hold_id: uuid.UUID) -> None:
    with UnitOfWork(p.system) as uow:
        hold = uow.session.get(Appointment, hold_id)
        assert hold is not None
        hold.hold_expires_at = utcnow() - timedelta(minutes=1)
        uow.session.add(hold)
        uow.commit()


# -- booking ------------------------------------------------------------------------------------------


def test_booking_writes_the_appointment_and_its_audit_event_in_one_transaction(harbor: Practice) -> None:
    start = local_start(3, 10)
    # Not committed: neither the appointment nor its audit event survives.
    with UnitOfWork(harbor.patient_actor) as uow:
        result = booking.book_appointment(harbor.patient_actor, uow, provider_id=harbor.provider.id, start=start)
        uow.flush()
        # The audit row joins the transaction at commit (backend/audit/service.py: the chain's lock is then held
        # for the final flush only); it is already this unit of work's.
        pending = uow.session.info.get("audit.pending_changes", [])
        assert [e.action for e in pending if e.entity_id == result.appointment.id] == ["appointment.booked"]
    assert footprint(harbor) == (0, 0)

    appointment = book(harbor, start=start)
    assert appointment.status == AppointmentStatus.BOOKED
    assert appointment.start_at == start and appointment.end_at == start + timedelta(minutes=50)
    assert appointment.patient_id == harbor.patient.id and appointment.clinic_id == harbor.clinic.id
    assert appointment.modality == "in_person" and appointment.booked_by_user_id == harbor.patient_user.id
    assert actions(harbor, appointment.id) == ["appointment.booked"]
    assert footprint(harbor) == (1, 1)


def test_the_providers_lock_is_held_from_the_guarded_path_to_the_end_of_the_transaction(
    harbor: Practice, engine: sa.Engine
) -> None:
    """The advisory lock is taken inside the hold-release statement (one round trip): it must be held even when no
    hold was released, until the transaction ends, so racing bookings of the provider queue behind it."""
    key = f"{harbor.tenant_id}:{harbor.provider.id}"
    probe = sa.text("SELECT pg_try_advisory_xact_lock(hashtextextended(:key, 0))")
    with UnitOfWork(harbor.patient_actor) as uow:
        booking.book_appointment(harbor.patient_actor, uow, provider_id=harbor.provider.id, start=local_start(3, 10))
        with engine.connect() as other:
            assert other.execute(probe, {"key": key}).scalar() is False
            other.rollback()
        uow.commit()
    with engine.connect() as other:
        assert other.execute(probe, {"key": key}).scalar() is True
        other.rollback()


def test_a_clinics_own_policy_decides_over_the_practice_default(harbor: Practice) -> None:
    set_booking_policy(harbor, min_notice_minutes=60)
    set_booking_policy(harbor, clinic=harbor.clinic, min_notice_minutes=5 * 24 * 60)
    with pytest.raises(ValidationFailed, match="5 days notice"):
        book(harbor, start=local_start(3, 10))
    assert book(harbor, start=local_start(6, 10)).status == AppointmentStatus.BOOKED


def test_a_start_in_another_offset_books_the_same_slot(harbor: Practice) -> None:
    start = local_start(3, 10)
    appointment = book(harbor, start=start.astimezone(ZoneInfo("Asia/Tokyo")))
    assert appointment.start_at == start


INVALID: dict[str, tuple[int, str, Callable[[Practice, Practice], dict[str, Any]]]] = {
    "naive datetime": (422, "time zone offset", lambda p, o: {"start": datetime(2027, 1, 5, 15, 0)}),  # noqa: DTZ001
    "past slot": (422, "in the past", lambda p, o: {"start": local_start(-1, 10)}),
    "outside availability (evening)": (422, "No session starts", lambda p, o: {"start": local_start(3, 21)}),
    "off the grid": (422, "No session starts", lambda p, o: {"start": local_start(3, 10, minute=30)}),
    "before minimum notice": (422, "notice", lambda p, o: {"start": local_start(1, 10)}),
    "beyond horizon": (422, "90 days ahead", lambda p, o: {"start": local_start(100, 10)}),
    "wrong modality": (422, "in person only", lambda p, o: {"modality": "telehealth"}),
    "unknown provider": (404, "provider not found", lambda p, o: {"provider_id": uuid.uuid4()}),
    "another tenant's provider": (404, "provider not found", lambda p, o: {"provider_id": o.provider.id}),
    "inside time off": (422, "No session starts", lambda p, o: {"start": local_start(4, 10)}),
    "empty idempotency key": (422, "Idempotency-Key", lambda p, o: {"idempotency_key": "   "}),
}


@pytest.mark.parametrize(
    ("fn", "case"),
    [(booking.book_appointment, case) for case in sorted(INVALID)]
    + [(booking.hold_slot, case) for case in sorted(INVALID) if "idempotency" not in case],
)
def test_invalid_booking_is_refused_with_a_clear_message_and_writes_nothing(
    harbor: Practice, summit: Practice, case: str, fn: Callable[..., Any]
) -> None:
    status, message, make = INVALID[case]
    set_booking_policy(harbor, min_notice_minutes=2 * 24 * 60)  # two days
    add_time_off(harbor, local_start(4, 0), local_start(5, 0), reason="conference")
    kwargs = {"provider_id": harbor.provider.id, "start": local_start(3, 10), **make(harbor, summit)}
    before = footprint(harbor), footprint(summit)
    with pytest.raises(DomainError) as refused:
        run(harbor.patient_actor, fn, **kwargs)
    assert refused.value.status_code == status
    assert message in refused.value.message
    assert (footprint(harbor), footprint(summit)) == before


def test_another_tenants_provider_looks_exactly_like_a_missing_one(harbor: Practice, summit: Practice) -> None:
    with pytest.raises(NotFound) as foreign:
        book(harbor, provider_id=summit.provider.id)
    with pytest.raises(NotFound) as missing:
        book(harbor, provider_id=uuid.uuid4())
    assert foreign.value.message == missing.value.message


def test_inactive_provider_is_not_found(harbor: Practice) -> None:
    with UnitOfWork(harbor.system) as uow:
        provider = uow.session.get(Provider, harbor.provider.id)
        assert provider is not None
        provider.active = False
        uow.session.add(provider)
        uow.commit()
    with pytest.raises(NotFound):
        book(harbor)


def test_slot_list_refuses_an_end_before_its_start(harbor: Practice) -> None:
    start = local_start(3, 0)
    with pytest.raises(ValidationFailed, match="end must be after start"):
        run(harbor.patient_actor, list_slots, harbor.provider.id, start=start, end=start - timedelta(hours=1))
    with pytest.raises(ValidationFailed, match="time zone offset"):
        run(harbor.patient_actor, list_slots, harbor.provider.id, start=datetime(2027, 1, 1), end=start)  # noqa: DTZ001
    with pytest.raises(ValidationFailed, match="31 days"):
        run(harbor.patient_actor, list_slots, harbor.provider.id, start=start, end=start + timedelta(days=40))


# -- who may book -------------------------------------------------------------------------------------


def test_a_patient_books_only_for_themself(harbor: Practice) -> None:
    other = add_patient(harbor, "Someone Else")
    with pytest.raises(PermissionDenied):
        book(harbor, patient_id=other.id)
    assert footprint(harbor) == (0, 0)
    # Naming themself is fine.
    assert book(harbor, patient_id=harbor.patient.id).patient_id == harbor.patient.id


def test_a_doctor_may_not_book(harbor: Practice) -> None:
    with pytest.raises(PermissionDenied):
        book(harbor, harbor.doctor, patient_id=harbor.patient.id)
    with pytest.raises(PermissionDenied):
        run(harbor.doctor, booking.hold_slot, provider_id=harbor.provider.id, start=local_start(3, 10))
    assert footprint(harbor) == (0, 0)


def test_an_admin_names_the_patient(harbor: Practice, summit: Practice) -> None:
    with pytest.raises(ValidationFailed, match="patient_id is required"):
        book(harbor, harbor.admin)
    with pytest.raises(NotFound, match="patient not found"):
        book(harbor, harbor.admin, patient_id=summit.patient.id)
    assert footprint(harbor) == (0, 0)
    appointment = book(harbor, harbor.admin, patient_id=harbor.patient.id)
    assert appointment.patient_id == harbor.patient.id
    assert appointment.booked_by_user_id == harbor.admin_user.id


# -- conflicts ----------------------------------------------------------------------------------------


def test_a_taken_slot_is_a_conflict(harbor: Practice) -> None:
    first = book(harbor)
    second = patient_actor(harbor)
    before = footprint(harbor)
    with pytest.raises(Conflict) as taken:
        book(harbor, second)
    assert taken.value.message == SLOT_TAKEN and "taken" in taken.value.message
    assert taken.value.code == "slot_taken"
    assert footprint(harbor) == before
    # The same patient asking again is refused the same way.
    with pytest.raises(Conflict):
        book(harbor)
    assert reload(harbor, first.id).status == AppointmentStatus.BOOKED


def test_an_overlapping_session_of_another_rule_is_taken(harbor: Practice) -> None:
    # A second rule at the other clinic whose sessions start at half past: they overlap the first rule's.
    add_availability(harbor, clinic=harbor.clinic2, start=time(2, 30))
    book(harbor, start=local_start(3, 10))
    clinic2_zone = harbor.clinic2.timezone
    # Find the clinic-2 session that overlaps 10:00-10:50 New York time.
    with UnitOfWork(harbor.patient_actor) as uow:
        slots = list_slots(
            harbor.patient_actor, uow, harbor.provider.id, start=local_start(3, 9), end=local_start(3, 11)
        )
    overlapping = [s for s in slots if s.timezone == clinic2_zone]
    assert overlapping and all(s.status == "booked" for s in overlapping)
    with pytest.raises(Conflict, match="taken"):
        book(harbor, patient_actor(harbor), start=overlapping[0].start)


def test_a_patient_cannot_hold_two_appointments_at_the_same_time(harbor: Practice) -> None:
    other_doc = add_provider(harbor, "Olive Other")
    add_availability(harbor, provider=other_doc)
    book(harbor)
    before = footprint(harbor)
    with pytest.raises(Conflict) as busy:
        book(harbor, provider_id=other_doc.id)
    assert busy.value.message == PATIENT_BUSY
    assert footprint(harbor) == before
    # Another patient takes the other doctor's slot without trouble.
    assert book(harbor, patient_actor(harbor), provider_id=other_doc.id).status == AppointmentStatus.BOOKED


# -- holds --------------------------------------------------------------------------------------------


def _hold(p: Practice, actor: Actor | None = None, start: datetime | None = None) -> Appointment:
    return run(  # type: ignore[no-any-return]
        actor or p.patient_actor, booking.hold_slot, provider_id=p.provider.id, start=start or local_start(3, 10)
    )


def _slot_status(p: Practice, start: datetime) -> str:
    with UnitOfWork(p.patient_actor) as uow:
        slots = list_slots(p.patient_actor, uow, p.provider.id, start=start, end=start + timedelta(hours=1))
    (slot,) = [s for s in slots if s.start == start]
    return slot.status


def test_a_hold_blocks_others_and_shows_as_held(harbor: Practice) -> None:
    start = local_start(3, 10)
    assert _slot_status(harbor, start) == "free"
    hold = _hold(harbor)
    assert hold.status == AppointmentStatus.HELD and hold.hold_expires_at is not None
    assert timedelta(minutes=9) < hold.hold_expires_at - utcnow() <= timedelta(minutes=10)
    assert actions(harbor, hold.id) == ["appointment.held"]
    assert _slot_status(harbor, start) == "held"
    other = patient_actor(harbor)
    with pytest.raises(Conflict, match="taken"):
        book(harbor, other, start=start)
    with pytest.raises(Conflict, match="taken"):
        _hold(harbor, other)


def test_confirming_a_hold_books_it_once(harbor: Practice) -> None:
    hold = _hold(harbor)
    with pytest.raises(Conflict):
        run(harbor.patient_actor, booking.confirm_hold, hold.id, version=hold.version + 5)
    confirmed = run(harbor.patient_actor, booking.confirm_hold, hold.id, version=hold.version)
    assert confirmed.id == hold.id and confirmed.status == AppointmentStatus.BOOKED
    assert confirmed.hold_expires_at is None and confirmed.version == hold.version + 1
    assert _slot_status(harbor, local_start(3, 10)) == "booked"
    with pytest.raises(Conflict, match="already confirmed"):
        run(harbor.patient_actor, booking.confirm_hold, hold.id, version=hold.version)
    with pytest.raises(Conflict, match="already confirmed"):
        run(harbor.patient_actor, booking.confirm_hold, hold.id, version=confirmed.version)
    assert actions(harbor, hold.id) == ["appointment.held", "appointment.booked"]


def test_only_the_holder_confirms(harbor: Practice) -> None:
    hold = _hold(harbor)
    with pytest.raises(NotFound):
        run(patient_actor(harbor), booking.confirm_hold, hold.id, version=hold.version)
    with pytest.raises(PermissionDenied):
        run(harbor.doctor, booking.confirm_hold, hold.id, version=hold.version)
    assert reload(harbor, hold.id).status == AppointmentStatus.HELD


def test_an_expired_hold_cannot_be_confirmed_and_frees_the_slot(harbor: Practice) -> None:
    hold = _hold(harbor)
    expire(harbor, hold.id)
    assert _slot_status(harbor, local_start(3, 10)) == "free"
    with pytest.raises(Conflict, match="expired") as lapsed:
        run(harbor.patient_actor, booking.confirm_hold, hold.id, version=hold.version)
    assert lapsed.value.code == "hold_expired"
    # Another patient books the slot: the guarded path releases the stale hold first (and audits it).
    taken = book(harbor, patient_actor(harbor))
    assert taken.status == AppointmentStatus.BOOKED
    stale = reload(harbor, hold.id)
    assert stale.status == AppointmentStatus.CANCELLED and stale.cancel_reason == "hold expired"
    assert actions(harbor, hold.id) == ["appointment.held", "appointment.hold_expired"]
    with pytest.raises(Conflict, match="expired"):
        run(harbor.patient_actor, booking.confirm_hold, hold.id, version=hold.version)


def test_the_holder_books_elsewhere_after_the_hold_lapsed(harbor: Practice) -> None:
    # The patient's own lapsed hold does not count against them at another provider either.
    other_doc = add_provider(harbor, "Olive Other")
    add_availability(harbor, provider=other_doc)
    hold = _hold(harbor)
    expire(harbor, hold.id)
    assert book(harbor, provider_id=other_doc.id).status == AppointmentStatus.BOOKED
    assert reload(harbor, hold.id).status == AppointmentStatus.CANCELLED


def test_releasing_a_hold_frees_the_slot(harbor: Practice) -> None:
    hold = _hold(harbor)
    run(harbor.patient_actor, booking.release_hold, hold.id)
    released = reload(harbor, hold.id)
    assert released.status == AppointmentStatus.CANCELLED and released.cancel_reason == "hold released"
    assert _slot_status(harbor, local_start(3, 10)) == "free"
    with pytest.raises(Conflict, match="no hold"):
        run(harbor.patient_actor, booking.release_hold, hold.id)
    with pytest.raises(NotFound):
        run(patient_actor(harbor), booking.release_hold, hold.id)
    assert book(harbor, patient_actor(harbor)).status == AppointmentStatus.BOOKED
    assert actions(harbor, hold.id) == ["appointment.held", "appointment.hold_released"]


# -- cancellation -------------------------------------------------------------------------------------


def test_a_patient_cancels_outside_the_window(harbor: Practice) -> None:
    appointment = book(harbor)
    cancelled = run(harbor.patient_actor, booking.cancel_appointment, appointment.id, reason="  feeling better ")
    assert cancelled.status == AppointmentStatus.CANCELLED and cancelled.cancel_reason == "feeling better"
    assert cancelled.cancelled_at is not None
    (event,) = [e for e in rows(harbor, AuditEvent, entity_id=appointment.id) if e.action == "appointment.cancelled"]
    assert event.data == {"late": False, "by_role": "patient"}
    assert _slot_status(harbor, local_start(3, 10)) == "free"
    with pytest.raises(Conflict, match="already cancelled"):
        run(harbor.patient_actor, booking.cancel_appointment, appointment.id)


def test_a_patient_cancelling_inside_the_window_is_late_a_doctor_is_not(harbor: Practice) -> None:
    soon = utcnow().replace(microsecond=0) + timedelta(hours=3)
    mine = add_appointment(harbor, soon)
    cancelled = run(harbor.patient_actor, booking.cancel_appointment, mine.id)
    assert cancelled.status == AppointmentStatus.LATE_CANCELLED
    with pytest.raises(Conflict, match="already late cancelled"):
        run(harbor.patient_actor, booking.cancel_appointment, mine.id)
    later = add_appointment(harbor, soon + timedelta(hours=1))
    assert run(harbor.doctor, booking.cancel_appointment, later.id).status == AppointmentStatus.CANCELLED


def test_cancelling_someone_elses_appointment_is_not_found(harbor: Practice, summit: Practice) -> None:
    appointment = book(harbor)
    other_doc = add_provider(harbor, "Olive Other")
    other_doctor = Actor(tenant_id=harbor.tenant_id, role=Role.DOCTOR, user_id=uuid.uuid4(), provider_id=other_doc.id)
    for actor in (patient_actor(harbor), other_doctor, summit.admin, summit.patient_actor):
        with pytest.raises(NotFound, match="appointment not found"):
            run(actor, booking.cancel_appointment, appointment.id)
    assert reload(harbor, appointment.id).status == AppointmentStatus.BOOKED


def test_a_started_appointment_cannot_be_cancelled(harbor: Practice) -> None:
    started = add_appointment(harbor, utcnow() - timedelta(minutes=10))
    with pytest.raises(ValidationFailed, match="already started"):
        run(harbor.admin, booking.cancel_appointment, started.id)


# -- rescheduling -------------------------------------------------------------------------------------


def test_rescheduling_to_a_taken_slot_keeps_the_old_appointment(harbor: Practice) -> None:
    mine = book(harbor)
    book(harbor, patient_actor(harbor), start=local_start(3, 11))
    before = footprint(harbor)
    with pytest.raises(Conflict, match="taken"):
        run(harbor.patient_actor, booking.reschedule_appointment, mine.id, new_start=local_start(3, 11))
    assert reload(harbor, mine.id).status == AppointmentStatus.BOOKED
    assert footprint(harbor) == before


def test_rescheduling_moves_atomically_and_keeps_the_series(harbor: Practice) -> None:
    series_id = uuid.uuid4()
    old = book(harbor, series_id=series_id)
    new = run(harbor.patient_actor, booking.reschedule_appointment, old.id, new_start=local_start(5, 15))
    moved_from = reload(harbor, old.id)
    assert moved_from.status == AppointmentStatus.CANCELLED and moved_from.cancel_reason == "rescheduled"
    assert new.status == AppointmentStatus.BOOKED and new.start_at == local_start(5, 15)
    assert new.series_id == series_id and new.patient_id == harbor.patient.id
    (event,) = rows(harbor, AuditEvent, entity_id=new.id)
    assert event.action == "appointment.rescheduled" and event.data == {"from_appointment": str(old.id)}
    assert _slot_status(harbor, local_start(3, 10)) == "free"
    # An adjacent move that overlaps nothing but the appointment itself is fine too.
    again = run(harbor.patient_actor, booking.reschedule_appointment, new.id, new_start=local_start(5, 16))
    assert again.start_at == local_start(5, 16)


def test_rescheduling_validates_like_booking(harbor: Practice) -> None:
    old = book(harbor)
    for start, message in (
        (local_start(3, 10), "same as the current"),
        (local_start(3, 21), "No session starts"),
        (local_start(-1, 10), "in the past"),
    ):
        with pytest.raises(ValidationFailed, match=message):
            run(harbor.patient_actor, booking.reschedule_appointment, old.id, new_start=start)
    soon = add_appointment(harbor, utcnow() + timedelta(hours=5), patient=add_patient(harbor, "Soon"))
    with pytest.raises(NotFound):
        run(harbor.patient_actor, booking.reschedule_appointment, soon.id, new_start=local_start(6, 10))
    mine_soon = add_appointment(harbor, utcnow() + timedelta(hours=7))
    with pytest.raises(ValidationFailed, match="cannot be moved online"):
        run(harbor.patient_actor, booking.reschedule_appointment, mine_soon.id, new_start=local_start(6, 10))
    assert reload(harbor, old.id).status == AppointmentStatus.BOOKED


# -- attendance ---------------------------------------------------------------------------------------


def test_attendance_is_recorded_after_the_start_by_the_own_doctor(harbor: Practice) -> None:
    upcoming = book(harbor)
    with pytest.raises(ValidationFailed, match="once the appointment has started"):
        run(harbor.doctor, booking.mark_attendance, upcoming.id, outcome="completed")
    started = add_appointment(harbor, utcnow() - timedelta(minutes=30))
    with pytest.raises(PermissionDenied):
        run(harbor.patient_actor, booking.mark_attendance, started.id, outcome="completed")
    with pytest.raises(ValidationFailed, match="outcome"):
        run(harbor.doctor, booking.mark_attendance, started.id, outcome="late")
    other_doc = add_provider(harbor, "Olive Other")
    other_doctor = Actor(tenant_id=harbor.tenant_id, role=Role.DOCTOR, user_id=uuid.uuid4(), provider_id=other_doc.id)
    with pytest.raises(NotFound):
        run(other_doctor, booking.mark_attendance, started.id, outcome="completed")
    done = run(harbor.doctor, booking.mark_attendance, started.id, outcome="completed")
    assert done.status == AppointmentStatus.COMPLETED
    # A correction by an admin.
    assert run(harbor.admin, booking.mark_attendance, started.id, outcome="no_show").status == AppointmentStatus.NO_SHOW
    assert actions(harbor, started.id) == ["appointment.completed", "appointment.no_show"]
    cancelled = add_appointment(harbor, utcnow() - timedelta(hours=3), status=AppointmentStatus.CANCELLED)
    with pytest.raises(Conflict):
        run(harbor.doctor, booking.mark_attendance, cancelled.id, outcome="completed")


# -- idempotency --------------------------------------------------------------------------------------


def test_a_retry_with_the_same_idempotency_key_books_once(harbor: Practice, summit: Practice) -> None:
    first = run(
        harbor.patient_actor, booking.book_appointment, provider_id=harbor.provider.id, start=local_start(3, 10),
        idempotency_key="retry-1",
    )  # fmt: skip
    again = run(
        harbor.patient_actor, booking.book_appointment, provider_id=harbor.provider.id,
        start=local_start(3, 10).astimezone(ZoneInfo("Europe/Berlin")),
        idempotency_key=" retry-1 ",
    )  # fmt: skip
    assert not first.replayed and again.replayed
    assert again.appointment.id == first.appointment.id
    assert footprint(harbor) == (1, 1)
    with pytest.raises(ValidationFailed, match="different booking"):
        run(
            harbor.patient_actor, booking.book_appointment, provider_id=harbor.provider.id,
            start=local_start(3, 11), idempotency_key="retry-1",
        )  # fmt: skip
    # The key is per practice: another practice may use the same one.
    theirs = run(
        summit.patient_actor, booking.book_appointment, provider_id=summit.provider.id, start=local_start(3, 10),
        idempotency_key="retry-1",
    )  # fmt: skip
    assert not theirs.replayed and theirs.appointment.tenant_id == summit.tenant_id


def test_after_a_cancellation_the_old_key_replays_and_a_new_key_books_the_slot_again(harbor: Practice) -> None:
    kwargs = {"provider_id": harbor.provider.id, "start": local_start(3, 10)}
    first = run(harbor.patient_actor, booking.book_appointment, idempotency_key="k-1", **kwargs).appointment
    run(harbor.patient_actor, booking.cancel_appointment, first.id)
    replay = run(harbor.patient_actor, booking.book_appointment, idempotency_key="k-1", **kwargs)
    assert replay.replayed and replay.appointment.id == first.id
    assert replay.appointment.status == AppointmentStatus.CANCELLED
    fresh = run(harbor.patient_actor, booking.book_appointment, idempotency_key="k-2", **kwargs)
    assert not fresh.replayed and fresh.appointment.id != first.id
    assert fresh.appointment.status == AppointmentStatus.BOOKED


# -- the database's own guarantee ---------------------------------------------------------------------


def _insert(p: Practice, start: datetime, minutes: int = 50, **fields: Any) -> None:
    with UnitOfWork(p.system) as uow:
        uow.session.add(
            Appointment(
                tenant_id=p.tenant_id,
                provider_id=fields.pop("provider_id", p.provider.id),
                patient_id=fields.pop("patient_id", p.patient.id),
                clinic_id=p.clinic.id,
                start_at=start,
                end_at=start + timedelta(minutes=minutes),
                **fields,
            )
        )
        uow.commit()


def _refused_by(p: Practice, constraint: str, start: datetime, **fields: Any) -> None:
    with pytest.raises(IntegrityError) as refused:
        _insert(p, start, **fields)
    assert sqlstate(refused.value) == "23P01"
    assert constraint_name(refused.value) == constraint


def test_the_exclusion_constraints_refuse_overlaps_that_bypass_the_service(harbor: Practice) -> None:
    start = local_start(3, 10)
    other_doc = add_provider(harbor, "Olive Other")
    other_patient = add_patient(harbor, "Oscar Other")
    _insert(harbor, start)
    # One provider, another patient, 20 minutes later: overlaps.
    _refused_by(harbor, "ex_appointments_provider_overlap", start + timedelta(minutes=20), patient_id=other_patient.id)
    # One patient, another provider, same time.
    _refused_by(harbor, "ex_appointments_patient_overlap", start, provider_id=other_doc.id)
    # A live hold occupies time like a booking.
    _refused_by(
        harbor, "ex_appointments_provider_overlap", start, patient_id=other_patient.id, status=AppointmentStatus.HELD
    )
    assert len(rows(harbor, Appointment)) == 1


def test_inactive_and_adjacent_rows_do_not_conflict(harbor: Practice, summit: Practice) -> None:
    start = local_start(3, 10)
    other_patient = add_patient(harbor, "Oscar Other")
    _insert(harbor, start, status=AppointmentStatus.CANCELLED)
    _insert(harbor, start, status=AppointmentStatus.LATE_CANCELLED)
    _insert(harbor, start, status=AppointmentStatus.NO_SHOW)
    _insert(harbor, start, status=AppointmentStatus.BOOKED)
    # Half-open ranges: one ending at 10:50 and one starting at 10:50 touch without overlapping.
    _insert(harbor, start + timedelta(minutes=50), patient_id=other_patient.id)
    _insert(harbor, start - timedelta(minutes=50), patient_id=other_patient.id)
    # Another practice's provider and patient are other people: no conflict across tenants.
    with UnitOfWork(summit.system) as uow:
        uow.session.add(
            Appointment(
                tenant_id=summit.tenant_id, provider_id=summit.provider.id, patient_id=summit.patient.id,
                clinic_id=summit.clinic.id, start_at=start, end_at=start + timedelta(minutes=50),
            )
        )  # fmt: skip
        uow.commit()
    assert len(rows(harbor, Appointment)) == 6
    # Cancelling the booked one frees the time for a direct insert too.
    with UnitOfWork(harbor.system) as uow:
        booked = uow.session.exec(select(Appointment).where(Appointment.status == AppointmentStatus.BOOKED)).all()
        for appointment in booked:
            if appointment.start_at == start:
                appointment.status = AppointmentStatus.CANCELLED
                uow.session.add(appointment)
        uow.commit()
    _insert(harbor, start, patient_id=add_patient(harbor, "Third").id)
