"""The notifications package subscribes to the domain events of a unit of work (issue 10, item 11).

Domain services only record events (backend.events.emit); backend.notifications.subscriber, wired by
backend.composition, writes the outbox rows inside the same transaction. Real PostgreSQL; Celery eager.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from backend import events
from backend.db import UnitOfWork
from backend.notifications import subscriber
from backend.notifications.models import Notification, NotificationDelivery
from backend.scheduling import booking
from backend.scheduling.models import Appointment, AppointmentStatus
from tests.factories import Practice, add_appointment, add_availability, local_start, make_practice, rows
from tests.integration.test_offers import no_quiet_hours


@pytest.fixture
def harbor(db: sa.Engine) -> Practice:
    p = make_practice("Harbor Mental Health", "harbor")
    no_quiet_hours(p)
    return p


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[events.DomainEvent]:
    seen: list[events.DomainEvent] = []
    monkeypatch.setattr(events, "publish", seen.append)
    return seen


@pytest.fixture
def unsubscribed() -> Iterator[None]:
    """The notifications package is not subscribed for the test (and is again after it)."""
    assert subscriber.registered(), "the test suite composes the app as the API and the worker do"
    subscriber.unregister()
    try:
        yield
    finally:
        subscriber.register()


def _notices_in(uow: UnitOfWork) -> list[uuid.UUID]:
    return list(uow.session.exec(sa.select(Notification.id)).all())  # type: ignore[call-overload]


def test_the_subscriber_writes_the_notice_inside_the_changes_transaction(harbor: Practice) -> None:
    add_availability(harbor)
    assert events.subscribers("appointment.booked"), "wired by backend.composition"
    # Rolled back: the booking and its notice go together.
    with UnitOfWork(harbor.patient_actor) as uow:
        booking.book_appointment(harbor.patient_actor, uow, provider_id=harbor.provider.id, start=local_start(3, 10))
        assert len(_notices_in(uow)) == 1  # written by the subscriber, in this transaction, before commit
    assert rows(harbor, Notification) == [] and rows(harbor, NotificationDelivery) == []
    assert rows(harbor, Appointment) == []
    # Committed: exactly one notice, with the ids the booking's notice always carried.
    with UnitOfWork(harbor.patient_actor) as uow:
        result = booking.book_appointment(harbor.patient_actor, uow, provider_id=harbor.provider.id,
                                          start=local_start(3, 10))  # fmt: skip
        uow.commit()
    (note,) = rows(harbor, Notification)
    assert note.event_type == "appointment_booked" and note.patient_id == harbor.patient.id
    assert note.payload == {"appointment_id": str(result.appointment.id), "clinic_id": str(harbor.clinic.id),
                            "provider_id": str(harbor.provider.id)}  # fmt: skip
    assert len(rows(harbor, NotificationDelivery, notification_id=note.id)) == 1


def test_without_the_subscriber_a_domain_change_writes_no_notice(
    harbor: Practice, unsubscribed: None, published: list[events.DomainEvent]
) -> None:
    """The inversion: scheduling does not call the notifications package; it only records its events."""
    add_availability(harbor)
    # Other packages may listen (the metrics count bookings); none of the notifications package's listeners does.
    listening = {getattr(s, "__module__", "") for s in events.subscribers("appointment.booked")}
    assert not {m for m in listening if m.startswith("backend.notifications")}, listening
    with UnitOfWork(harbor.patient_actor) as uow:
        result = booking.book_appointment(harbor.patient_actor, uow, provider_id=harbor.provider.id,
                                          start=local_start(3, 10))  # fmt: skip
        uow.commit()
    with UnitOfWork(harbor.admin) as uow:
        booking.cancel_appointment(harbor.admin, uow, result.appointment.id)
        uow.commit()
    (appointment,) = rows(harbor, Appointment)
    assert appointment.status == AppointmentStatus.CANCELLED
    assert [e.name for e in published] == ["appointment.booked", "appointment.cancelled"]
    assert rows(harbor, Notification) == [] and rows(harbor, NotificationDelivery) == []


def test_a_move_is_one_precise_event_and_one_notice(harbor: Practice, published: list[events.DomainEvent]) -> None:
    add_availability(harbor)
    old = add_appointment(harbor, local_start(4, 10))
    with UnitOfWork(harbor.admin) as uow:
        new = booking.reschedule_appointment(harbor.admin, uow, old.id, new_start=local_start(5, 11))
        uow.commit()
    moves = [e for e in published if e.name.startswith("appointment.")]  # (the sent notice adds notification.changed)
    assert [e.name for e in moves] == ["appointment.cancelled", "appointment.booked", "appointment.rescheduled"]
    moved = moves[-1]
    # Ids only (these events also reach the pages): the patient and provider name the audiences.
    assert moved.entity_id == str(new.id)
    assert moved.data == {"from_appointment_id": str(old.id), "provider_id": str(harbor.provider.id),
                          "clinic_id": str(new.clinic_id), "patient_id": str(harbor.patient.id)}  # fmt: skip
    assert moves[0].data["rescheduled_to"] == str(new.id)
    assert moves[1].data["rescheduled_from"] == str(old.id)
    (note,) = rows(harbor, Notification)
    assert note.event_type == "appointment_rescheduled"
    assert note.payload == {"appointment_id": str(new.id), "clinic_id": str(new.clinic_id),
                            "provider_id": str(harbor.provider.id)}  # fmt: skip
