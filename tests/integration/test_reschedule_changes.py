"""Rescheduling never silently moves a visit to another clinic, time zone or modality (issue 10 item 4).

The provider here works at two clinics: New York (in person mornings, telehealth afternoons) and Berlin (in
person, 08:00-11:00 Berlin time, i.e. the New York night, so the two never overlap). A move within the same
clinic and modality needs nothing more; a move that changes clinic (and zone) or modality is refused with a
clear code unless the request says the patient confirmed the change, by the service and by the REST route.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, time
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from backend.api.app import api
from backend.audit.models import AuditEvent
from backend.db import UnitOfWork
from backend.errors import Code, Conflict, ValidationFailed
from backend.notifications.models import Notification
from backend.scheduling import booking
from backend.scheduling.models import Appointment, AppointmentStatus
from backend.tenancy.context import Actor
from tests.factories import Practice, add_availability, add_patient, bearer, local_start, make_practice, rows

BERLIN = "Europe/Berlin"


@pytest.fixture
def harbor(db: sa.Engine) -> Practice:
    p = make_practice("Harbor Mental Health", "harbor", zones=("America/New_York", BERLIN))
    add_availability(p, start=time(8, 0), end=time(12, 0))
    add_availability(p, start=time(13, 0), end=time(16, 0), modality="telehealth")
    add_availability(p, clinic=p.clinic2, start=time(8, 0), end=time(11, 0))
    return p


def run(actor: Actor, fn: Any, *args: Any, **kwargs: Any) -> Any:
    with UnitOfWork(actor) as uow:
        result = fn(actor, uow, *args, **kwargs)
        uow.commit()
        return result


def book(p: Practice, start: datetime) -> Appointment:
    result = run(p.patient_actor, booking.book_appointment, provider_id=p.provider.id, start=start)
    return result.appointment  # type: ignore[no-any-return]


def reload(p: Practice, appointment: Appointment) -> Appointment:
    (found,) = rows(p, Appointment, id=appointment.id)
    return found  # type: ignore[no-any-return]


def footprint(p: Practice) -> tuple[int, int, int]:
    """Appointments, audit events and notifications: what a refused move must not change."""
    return len(rows(p, Appointment)), len(rows(p, AuditEvent)), len(rows(p, Notification))


def refused(p: Practice, appointment: Appointment, start: datetime) -> ValidationFailed:
    before = footprint(p)
    with pytest.raises(ValidationFailed) as caught:
        run(p.patient_actor, booking.reschedule_appointment, appointment.id, new_start=start)
    assert footprint(p) == before
    assert reload(p, appointment).status == AppointmentStatus.BOOKED
    return caught.value


def test_same_clinic_and_modality_moves_without_any_confirmation(harbor: Practice) -> None:
    old = book(harbor, local_start(3, 10))
    new = run(harbor.patient_actor, booking.reschedule_appointment, old.id, new_start=local_start(4, 11))
    assert (new.clinic_id, new.modality, new.start_at) == (harbor.clinic.id, "in_person", local_start(4, 11))
    (event,) = rows(harbor, AuditEvent, entity_id=new.id)
    assert event.data == {"from_appointment": str(old.id)}


def test_another_clinic_in_another_zone_is_refused_unless_confirmed(harbor: Practice) -> None:
    old = book(harbor, local_start(3, 10))
    berlin = local_start(4, 9, zone=BERLIN)

    error = refused(harbor, old, berlin)
    assert error.code == Code.RESCHEDULE_CHANGE_UNCONFIRMED
    assert error.status_code == 422 and error.field == "confirm_change"
    assert error.params["clinic_changed"] is True and error.params["timezone_changed"] is True
    assert error.params["modality_changed"] is False
    assert (error.params["from_clinic"], error.params["to_clinic"]) == (harbor.clinic.name, harbor.clinic2.name)
    assert (error.params["from_timezone"], error.params["to_timezone"]) == ("America/New_York", BERLIN)
    # The message names both clinics and both zones, and no patient data.
    assert harbor.clinic.name in error.message and harbor.clinic2.name in error.message
    assert BERLIN in error.message and harbor.patient.full_name not in error.message

    new = run(harbor.patient_actor, booking.reschedule_appointment, old.id, new_start=berlin, confirm_change=True)
    assert (new.clinic_id, new.modality, new.start_at) == (harbor.clinic2.id, "in_person", berlin)
    assert reload(harbor, old).status == AppointmentStatus.CANCELLED
    (event,) = rows(harbor, AuditEvent, entity_id=new.id)
    assert event.action == "appointment.rescheduled"
    assert event.data == {
        "from_appointment": str(old.id),
        "from_clinic_id": str(harbor.clinic.id),
        "to_clinic_id": str(harbor.clinic2.id),
        "from_modality": "in_person",
        "to_modality": "in_person",
        "change_confirmed": True,
    }
    assert len(rows(harbor, Notification, event_type="appointment_rescheduled")) == 1


def test_another_modality_at_the_same_clinic_is_refused_unless_confirmed(harbor: Practice) -> None:
    old = book(harbor, local_start(3, 10))
    video = local_start(4, 14)

    error = refused(harbor, old, video)
    assert error.code == Code.RESCHEDULE_CHANGE_UNCONFIRMED
    assert error.params["modality_changed"] is True
    assert error.params["clinic_changed"] is False and error.params["timezone_changed"] is False
    assert (error.params["from_modality"], error.params["to_modality"]) == ("in_person", "telehealth")

    new = run(harbor.patient_actor, booking.reschedule_appointment, old.id, new_start=video, confirm_change=True)
    assert (new.clinic_id, new.modality) == (harbor.clinic.id, "telehealth")


def test_confirming_a_change_does_not_skip_the_other_checks(harbor: Practice) -> None:
    old = book(harbor, local_start(3, 10))
    taken = local_start(5, 9, zone=BERLIN)
    olga = add_patient(harbor, "Olga Other")
    other = run(harbor.admin, booking.book_appointment, provider_id=harbor.provider.id, start=taken, patient_id=olga.id)
    assert other.appointment.clinic_id == harbor.clinic2.id
    before = footprint(harbor)
    with pytest.raises(Conflict, match="taken"):
        run(harbor.patient_actor, booking.reschedule_appointment, old.id, new_start=taken, confirm_change=True)
    assert footprint(harbor) == before and reload(harbor, old).status == AppointmentStatus.BOOKED


def test_an_admin_moving_a_visit_to_another_clinic_must_confirm_too(harbor: Practice) -> None:
    old = book(harbor, local_start(3, 10))
    berlin = local_start(4, 9, zone=BERLIN)
    with pytest.raises(ValidationFailed) as caught:
        run(harbor.admin, booking.reschedule_appointment, old.id, new_start=berlin)
    assert caught.value.code == Code.RESCHEDULE_CHANGE_UNCONFIRMED
    new = run(harbor.admin, booking.reschedule_appointment, old.id, new_start=berlin, confirm_change=True)
    assert new.clinic_id == harbor.clinic2.id


# -- REST ------------------------------------------------------------------------------------------------------


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(api) as c:
        yield c


def test_rest_reschedule_to_another_clinic_needs_confirm_change(client: TestClient, harbor: Practice) -> None:
    auth = bearer(client, harbor.patient_user.email)
    old = book(harbor, local_start(3, 10))
    url = f"/api/v1/appointments/{old.id}/reschedule"
    berlin = local_start(4, 9, zone=BERLIN).isoformat()
    before = footprint(harbor)

    for body in ({"start": berlin}, {"start": berlin, "confirm_change": False}):
        response = client.post(url, json=body, headers=auth)
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "reschedule.change_unconfirmed"
        assert response.json()["field"] == "confirm_change"
        assert harbor.clinic2.name in response.json()["detail"]
    # An explicit confirmation is a JSON true, not something that merely looks like one.
    for loose in ("yes", "true", 1):
        response = client.post(url, json={"start": berlin, "confirm_change": loose}, headers=auth)
        assert response.status_code == 422 and response.json()["code"] == "request_invalid", response.text
    assert footprint(harbor) == before

    moved = client.post(url, json={"start": berlin, "confirm_change": True}, headers=auth)
    assert moved.status_code == 200, moved.text
    assert moved.json()["clinic_id"] == str(harbor.clinic2.id)
    assert datetime.fromisoformat(moved.json()["start_at"]) == local_start(4, 9, zone=BERLIN)


def test_rest_reschedule_within_the_clinic_needs_nothing_more(client: TestClient, harbor: Practice) -> None:
    auth = bearer(client, harbor.patient_user.email)
    old = book(harbor, local_start(3, 10))
    url = f"/api/v1/appointments/{old.id}/reschedule"
    moved = client.post(url, json={"start": local_start(4, 11).isoformat()}, headers=auth)
    assert moved.status_code == 200, moved.text
    assert moved.json()["clinic_id"] == str(harbor.clinic.id) and moved.json()["modality"] == "in_person"
    video = client.post(
        f"/api/v1/appointments/{moved.json()['id']}/reschedule",
        json={"start": local_start(4, 14).isoformat()},
        headers=auth,
    )
    assert video.status_code == 422 and video.json()["code"] == "reschedule.change_unconfirmed"
