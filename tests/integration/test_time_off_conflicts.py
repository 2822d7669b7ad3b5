"""Time off over booked sessions (issue 10 item 6): the sessions are shown, and the doctor chooses to cancel them
(each cancelled by the clinic, the patient notified, the waitlist cascade run) or to keep them (listed as booked
during time off). Without a choice nothing is written."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from backend.api.app import api
from backend.audit.models import AuditEvent
from backend.errors import Code, Conflict, PermissionDenied, ValidationFailed
from backend.notifications.models import Notification
from backend.scheduling.availability import (
    TIME_OFF_CANCEL_REASON,
    add_time_off,
    list_availability,
    preview_time_off,
)
from backend.scheduling.models import Appointment, AppointmentStatus, TimeOff
from backend.tenancy.context import Actor, Role
from backend.waitlist.models import EntryStatus, OfferStatus, WaitlistEntry, WaitlistOffer
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
    make_practice,
    rows,
)
from tests.integration.test_offers import (  # noqa: F401  (eager_celery is an autouse fixture)
    cancel,
    eager_celery,
    no_quiet_hours,
    pending_offers,
    slot_at,
    window_for,
)


@pytest.fixture
def harbor(db: sa.Engine) -> Practice:
    p = make_practice("Harbor Mental Health", "harbor")
    no_quiet_hours(p)
    add_availability(p)
    return p


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(api) as c:
        yield c



def scene(p: Practice) -> dict[str, Any]:
    """Two booked sessions three days ahead (10:00 and 11:00 New York), one the day after (outside the span)."""
    ten, eleven = slot_at(3, 10), slot_at(3, 11)
    ann, bob = add_patient(p, "Ann Able"), add_patient(p, "Bob Baker")
    return {
        "ten": add_appointment(p, ten, patient=ann),
        "eleven": add_appointment(p, eleven, patient=bob),
        "later": add_appointment(p, slot_at(4, 10), patient=ann),
        "span": {"start": ten - timedelta(hours=1), "end": eleven + timedelta(hours=2)},
        "ann": ann,
        "bob": bob,
    }


def state(p: Practice) -> Any:
    return (
        sorted((a.id, a.status) for a in rows(p, Appointment)),
        len(rows(p, TimeOff)),
        len(rows(p, AuditEvent)),
        len(rows(p, Notification)),
        sorted((e.id, e.status) for e in rows(p, WaitlistEntry)),
    )


def test_preview_lists_the_sessions_the_time_off_covers(harbor: Practice) -> None:
    s = scene(harbor)
    sessions = call(harbor.doctor, preview_time_off, harbor.provider.id, **s["span"])
    assert [(x.appointment_id, x.patient_name, x.status) for x in sessions] == [
        (s["ten"].id, "Ann Able", "booked"),
        (s["eleven"].id, "Bob Baker", "booked"),
    ]
    assert sessions[0].clinic_timezone == "America/New_York"


def test_without_a_choice_it_is_refused_and_nothing_is_written(harbor: Practice) -> None:
    s = scene(harbor)
    before = state(harbor)
    with pytest.raises(Conflict) as refused:
        call(harbor.doctor, add_time_off, harbor.provider.id, **s["span"], reason="course")
    assert refused.value.code == Code.TIME_OFF_OVERLAPS_SESSIONS
    assert refused.value.params == {"sessions": 2}
    with pytest.raises(ValidationFailed):
        call(harbor.doctor, add_time_off, harbor.provider.id, **s["span"], booked_sessions="maybe")
    assert state(harbor) == before


def test_cancel_cancels_each_session_notifies_the_patients_and_offers_nothing_in_the_time_off(
    harbor: Practice,
) -> None:
    s = scene(harbor)
    # A waiting patient who would take 10:00 if it were free: the cascade runs but finds the time blocked.
    add_waitlist_entry(harbor, patient=add_patient(harbor, "Wes Waiting"), windows=window_for(slot_at(3, 10)))
    time_off = call(harbor.doctor, add_time_off, harbor.provider.id, **s["span"], booked_sessions="cancel")
    ten, eleven, later = (rows(harbor, Appointment, id=s[k].id)[0] for k in ("ten", "eleven", "later"))
    assert (ten.status, eleven.status, later.status) == ("cancelled", "cancelled", "booked")
    assert ten.cancel_reason == TIME_OFF_CANCEL_REASON and "course" not in ten.cancel_reason
    notified = {n.patient_id for n in rows(harbor, Notification, event_type="appointment_cancelled")}
    assert notified == {s["ann"].id, s["bob"].id}
    cancelled = rows(harbor, AuditEvent, action="appointment.cancelled")
    assert {e.entity_id for e in cancelled} == {ten.id, eleven.id}
    assert {e.data["by_role"] for e in cancelled} == {"doctor"}
    (added,) = rows(harbor, AuditEvent, action="time_off.added")
    assert added.entity_id == time_off.id
    assert sorted(added.data["sessions_cancelled"]) == sorted([str(ten.id), str(eleven.id)])
    assert pending_offers(harbor) == []


def test_cancel_withdraws_a_live_offer_in_the_time_off_and_the_entry_waits_again(harbor: Practice) -> None:
    start = slot_at(3, 10)
    booked = add_appointment(harbor, start, patient=add_patient(harbor, "Una Urgent"))
    entry = add_waitlist_entry(harbor, patient=add_patient(harbor, "Pia Pending"), windows=window_for(start))
    cancel(harbor, booked)
    (offer,) = pending_offers(harbor)
    span = {"start": start - timedelta(hours=1), "end": start + timedelta(hours=2)}
    (held,) = call(harbor.doctor, preview_time_off, harbor.provider.id, **span)
    assert (held.status, held.patient_name) == ("held", "")  # whom a slot is held for stays off the doctor's pages
    call(harbor.doctor, add_time_off, harbor.provider.id, **span, booked_sessions="cancel")
    (withdrawn,) = rows(harbor, WaitlistOffer, id=offer.id)
    assert withdrawn.status == OfferStatus.WITHDRAWN
    (hold,) = rows(harbor, Appointment, id=offer.appointment_id)
    assert hold.status == AppointmentStatus.CANCELLED
    (waiting,) = rows(harbor, WaitlistEntry, id=entry.id)
    assert waiting.status == EntryStatus.WAITING
    assert pending_offers(harbor) == []


def test_keep_leaves_the_sessions_booked_and_lists_them_during_the_time_off(harbor: Practice) -> None:
    s = scene(harbor)
    call(harbor.doctor, add_time_off, harbor.provider.id, **s["span"], booked_sessions="keep")
    assert {a.status for a in rows(harbor, Appointment)} == {AppointmentStatus.BOOKED}
    assert rows(harbor, Notification, event_type="appointment_cancelled") == []
    view = call(harbor.doctor, list_availability, harbor.provider.id)
    assert [(x.appointment_id, x.patient_name) for x in view.sessions_in_time_off] == [
        (s["ten"].id, "Ann Able"),
        (s["eleven"].id, "Bob Baker"),
    ]
    (added,) = rows(harbor, AuditEvent, action="time_off.added")
    assert sorted(added.data["sessions_kept"]) == sorted([str(s["ten"].id), str(s["eleven"].id)])


def test_another_doctor_sees_no_patient_of_this_one(harbor: Practice) -> None:
    s = scene(harbor)
    call(harbor.doctor, add_time_off, harbor.provider.id, **s["span"], booked_sessions="keep")
    other = add_provider(harbor, "Oli Other")
    add_user(harbor, "oli@harbor.test", Role.DOCTOR, full_name="Oli Other", provider_id=other.id)
    oli = Actor(tenant_id=harbor.tenant_id, role=Role.DOCTOR, provider_id=other.id)
    assert call(oli, list_availability, harbor.provider.id).sessions_in_time_off == []
    with pytest.raises(PermissionDenied):
        call(oli, preview_time_off, harbor.provider.id, **s["span"])
    assert len(call(harbor.admin, list_availability, harbor.provider.id).sessions_in_time_off) == 2


def test_time_off_without_sessions_needs_no_choice(harbor: Practice) -> None:
    span = {"start": slot_at(6, 9), "end": slot_at(6, 12)}
    assert call(harbor.doctor, preview_time_off, harbor.provider.id, **span) == []
    call(harbor.doctor, add_time_off, harbor.provider.id, **span)
    assert len(rows(harbor, TimeOff)) == 1


def test_rest_conflicts_refusal_and_choice(client: TestClient, harbor: Practice) -> None:
    s = scene(harbor)
    doctor = bearer(client, harbor.emails["doctor"])
    span = {"start": s["span"]["start"].isoformat(), "end": s["span"]["end"].isoformat()}
    conflicts = client.get(f"/api/v1/providers/{harbor.provider.id}/time-off/conflicts", params=span, headers=doctor)
    assert conflicts.status_code == 200, conflicts.text
    assert [x["patient_name"] for x in conflicts.json()] == ["Ann Able", "Bob Baker"]
    url = f"/api/v1/providers/{harbor.provider.id}/time-off"
    before = state(harbor)
    refused = client.post(url, json=span, headers=doctor)
    assert refused.status_code == 409 and refused.json()["code"] == Code.TIME_OFF_OVERLAPS_SESSIONS
    bad = client.post(url, json={**span, "booked_sessions": "later"}, headers=doctor)
    assert bad.status_code == 422
    assert state(harbor) == before
    kept = client.post(url, json={**span, "booked_sessions": "keep"}, headers=doctor)
    assert kept.status_code == 201, kept.text
    got = client.get(f"/api/v1/providers/{harbor.provider.id}/availability", headers=doctor).json()
    assert [x["appointment_id"] for x in got["sessions_in_time_off"]] == [str(s["ten"].id), str(s["eleven"].id)]
