"""Appointment reminders on real PostgreSQL: due offsets written once, never twice, in the outbox's transaction;
the practice's own offsets; cancelled, opted-out and rescheduled appointments; two sweeps at once; the
notification-settings service and REST route."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from backend.api.app import api
from backend.audit.models import AuditEvent
from backend.db import UnitOfWork
from backend.errors import Conflict, PermissionDenied, ValidationFailed
from backend.notifications import outbox, reminders
from backend.notifications.models import (
    AppointmentReminder,
    Notification,
    NotificationPreference,
    NotificationSettings,
)
from backend.notifications.tasks import send_reminders_tick
from backend.scheduling import booking
from backend.scheduling.models import Appointment, AppointmentStatus
from backend.types import utcnow
from backend.worker import BEAT_SCHEDULE, celery_app
from tests.factories import (
    Practice,
    add_appointment,
    add_availability,
    add_patient,
    add_provider,
    bearer,
    call,
    local_start,
    make_practice,
    rows,
)

H = timedelta(hours=1)


@pytest.fixture(autouse=True)
def eager() -> Iterator[None]:
    before = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = before


@pytest.fixture
def harbor(db: sa.Engine) -> Practice:
    return make_practice("Harbor Mental Health", "harbor")


@pytest.fixture
def summit(db: sa.Engine) -> Practice:
    return make_practice("Summit Counseling", "summit", zones=("America/Denver", "Asia/Tokyo"))


def booked(p: Practice, start: datetime, *, booked_at: datetime | None = None, **kwargs: Any) -> Appointment:
    """A booked appointment, booked at `booked_at` (default: ten days before the start)."""
    appointment = add_appointment(p, start, **kwargs)
    with UnitOfWork(p.system) as uow:
        row = uow.session.get(Appointment, appointment.id)
        assert row is not None
        row.created_at = booked_at or start - timedelta(days=10)
        uow.session.add(row)
        uow.commit()
    return appointment


def reminder_notes(p: Practice, appointment_id: uuid.UUID | None = None) -> list[Notification]:
    notes = rows(p, Notification, event_type="appointment_reminder")
    if appointment_id is not None:
        notes = [n for n in notes if n.payload["appointment_id"] == str(appointment_id)]
    return notes  # type: ignore[no-any-return]


def done_offsets(p: Practice, appointment_id: uuid.UUID) -> list[int]:
    return sorted((r.offset_minutes for r in rows(p, AppointmentReminder, appointment_id=appointment_id)), reverse=True)



# -- due, once ------------------------------------------------------------------------------------------------


def test_48h_and_2h_reminders_each_written_once_when_due(harbor: Practice) -> None:
    start = local_start(5, 10)
    appointment = booked(harbor, start)
    assert reminders.send_due_reminders(now=start - 48 * H - timedelta(minutes=1)) == 0
    assert reminder_notes(harbor) == []

    assert reminders.send_due_reminders(now=start - 48 * H) == 1
    (note,) = reminder_notes(harbor)
    assert note.patient_id == harbor.patient.id
    assert note.payload == {"appointment_id": str(appointment.id), "clinic_id": str(harbor.clinic.id)}
    assert done_offsets(harbor, appointment.id) == [2880]

    # Repeated sweeps, later ones too: nothing more until the 2 h moment.
    for now in (start - 48 * H, start - 47 * H, start - 3 * H, start - 2 * H - timedelta(seconds=1)):
        assert reminders.send_due_reminders(now=now) == 0
    assert len(reminder_notes(harbor)) == 1

    assert reminders.send_due_reminders(now=start - 2 * H) == 1
    for now in (start - 2 * H, start - H, start - timedelta(minutes=1), start, start + H):
        assert reminders.send_due_reminders(now=now) == 0
    assert len(reminder_notes(harbor, appointment.id)) == 2
    assert done_offsets(harbor, appointment.id) == [2880, 120]


def test_worker_down_across_both_moments_sends_only_the_2h_reminder(harbor: Practice) -> None:
    start = local_start(5, 10)
    appointment = booked(harbor, start)
    assert reminders.send_due_reminders(now=start - 90 * timedelta(minutes=1)) == 1
    assert len(reminder_notes(harbor)) == 1
    assert done_offsets(harbor, appointment.id) == [2880, 120]  # the 48 h one is done: it never fires
    assert reminders.send_due_reminders(now=start - timedelta(minutes=30)) == 0


def test_booked_inside_48h_gets_only_the_2h_reminder(harbor: Practice) -> None:
    start = local_start(5, 10)
    appointment = booked(harbor, start, booked_at=start - 30 * H)
    assert reminders.send_due_reminders(now=start - 29 * H) == 0
    assert done_offsets(harbor, appointment.id) == [2880]
    assert reminders.send_due_reminders(now=start - 2 * H) == 1
    assert len(reminder_notes(harbor)) == 1


@pytest.mark.parametrize(
    "status",
    [AppointmentStatus.CANCELLED, AppointmentStatus.LATE_CANCELLED, AppointmentStatus.HELD, AppointmentStatus.NO_SHOW],
)
def test_no_reminder_unless_booked(harbor: Practice, status: AppointmentStatus) -> None:
    start = local_start(5, 10)
    appointment = booked(harbor, start, status=status)
    for now in (start - 48 * H, start - 2 * H):
        assert reminders.send_due_reminders(now=now) == 0
    assert reminder_notes(harbor) == []
    assert done_offsets(harbor, appointment.id) == []


def test_cancelled_after_the_48h_reminder_gets_no_2h_one(harbor: Practice) -> None:
    start = local_start(5, 10)
    appointment = booked(harbor, start)
    assert reminders.send_due_reminders(now=start - 48 * H) == 1
    call(harbor.admin, booking.cancel_appointment, appointment.id)
    assert reminders.send_due_reminders(now=start - 2 * H) == 0
    assert len(reminder_notes(harbor)) == 1


def test_opted_out_patient_gets_no_reminder_and_none_later(harbor: Practice) -> None:
    start = local_start(5, 10)
    appointment = booked(harbor, start)
    with UnitOfWork(harbor.system) as uow:
        uow.session.add(NotificationPreference(tenant_id=harbor.tenant_id, patient_id=harbor.patient.id,
                                               email_opt_in=False))  # fmt: skip
        uow.commit()
    assert reminders.send_due_reminders(now=start - 48 * H) == 0
    assert reminder_notes(harbor) == []
    # Still done: opting in again later does not release a stale 48 h reminder.
    assert done_offsets(harbor, appointment.id) == [2880]


def test_a_failed_notification_rolls_the_reminder_row_back(harbor: Practice, monkeypatch: pytest.MonkeyPatch) -> None:
    start = local_start(5, 10)
    appointment = booked(harbor, start)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("outbox unavailable")

    monkeypatch.setattr(outbox, "notify", broken)
    assert reminders.send_due_reminders(now=start - 48 * H) == 0
    assert done_offsets(harbor, appointment.id) == []  # same transaction: no row without its notification
    monkeypatch.undo()
    assert reminders.send_due_reminders(now=start - 47 * H) == 1
    assert len(reminder_notes(harbor)) == 1


def test_two_concurrent_sweeps_send_one_reminder_each(harbor: Practice) -> None:
    start = local_start(5, 10)
    appointments = [
        booked(harbor, start, patient=add_patient(harbor, f"Patient {i}"), provider=add_provider(harbor, f"Dr {i}"))
        for i in range(8)
    ]
    now = start - 2 * H
    barrier = threading.Barrier(2)
    results: list[int] = []
    errors: list[BaseException] = []

    def sweep() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(reminders.send_due_reminders(now=now))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    for _ in range(3):  # a few rounds: the race has more than one chance to go wrong
        threads = [threading.Thread(target=sweep) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        now += timedelta(minutes=1)
    assert errors == []
    assert sum(results) == len(appointments)
    notes = reminder_notes(harbor)
    assert sorted(n.payload["appointment_id"] for n in notes) == sorted(str(a.id) for a in appointments)
    for appointment in appointments:
        assert done_offsets(harbor, appointment.id) == [2880, 120]


# -- the practice's offsets -----------------------------------------------------------------------------------


def test_a_practice_override_of_offsets_is_used(harbor: Practice, summit: Practice) -> None:
    start = local_start(5, 10)
    mine = booked(harbor, start)
    theirs = booked(summit, start)
    call(harbor.admin, reminders.update_notification_settings, reminder_offsets_minutes=[1440, 30])
    assert reminders.send_due_reminders(now=start - 48 * H) == 1  # summit still uses the default
    assert reminder_notes(harbor) == [] and len(reminder_notes(summit)) == 1
    assert reminders.send_due_reminders(now=start - 24 * H) == 1
    assert reminders.send_due_reminders(now=start - 2 * H) == 1
    assert reminders.send_due_reminders(now=start - timedelta(minutes=30)) == 1
    assert done_offsets(harbor, mine.id) == [1440, 30]
    assert done_offsets(summit, theirs.id) == [2880, 120]
    assert len(reminder_notes(harbor)) == 2 and len(reminder_notes(summit)) == 2


def test_no_offsets_means_no_reminders(harbor: Practice) -> None:
    start = local_start(5, 10)
    booked(harbor, start)
    call(harbor.admin, reminders.update_notification_settings, reminder_offsets_minutes=[])
    assert reminders.send_due_reminders(now=start - 2 * H) == 0
    assert rows(harbor, AppointmentReminder) == []


def test_the_sweep_of_one_practice_touches_only_its_own_appointments(harbor: Practice, summit: Practice) -> None:
    start = local_start(5, 10)
    booked(harbor, start)
    theirs = booked(summit, start)
    with UnitOfWork(harbor.system) as uow:
        assert reminders.send_tenant_reminders(harbor.system, uow, now=start - 2 * H) == 1
        uow.commit()
    assert rows(summit, AppointmentReminder) == [] and reminder_notes(summit) == []
    assert reminders.send_due_reminders(now=start - 2 * H) == 1
    assert done_offsets(summit, theirs.id) == [2880, 120]


# -- rescheduling -----------------------------------------------------------------------------------------------


def test_rescheduled_appointment_gets_the_notice_and_reminders_for_its_new_time(harbor: Practice) -> None:
    add_availability(harbor)
    old_start, new_start = local_start(5, 10), local_start(8, 15)
    old = call(harbor.patient_actor, booking.book_appointment, provider_id=harbor.provider.id, start=old_start)
    old = old.appointment
    assert reminders.send_due_reminders(now=old_start - 48 * H) == 1

    new = call(harbor.patient_actor, booking.reschedule_appointment, old.id, new_start=new_start)
    (notice,) = rows(harbor, Notification, event_type="appointment_rescheduled")
    assert notice.patient_id == harbor.patient.id
    assert notice.payload == {"appointment_id": str(new.id), "clinic_id": str(harbor.clinic.id),
                              "provider_id": str(harbor.provider.id)}  # fmt: skip
    assert rows(harbor, Notification, event_type="appointment_cancelled") == []  # one notice, not two

    # The old time passes without a 2 h reminder; the new time gets both of its own.
    assert reminders.send_due_reminders(now=old_start - 2 * H) == 0
    assert reminders.send_due_reminders(now=new_start - 48 * H) == 1
    assert reminders.send_due_reminders(now=new_start - 2 * H) == 1
    assert reminders.send_due_reminders(now=new_start - H) == 0
    assert len(reminder_notes(harbor, old.id)) == 1
    assert len(reminder_notes(harbor, new.id)) == 2
    assert done_offsets(harbor, new.id) == [2880, 120]


def test_a_failed_reschedule_sends_no_notice(harbor: Practice) -> None:
    add_availability(harbor)
    mine = call(harbor.patient_actor, booking.book_appointment, provider_id=harbor.provider.id,
                start=local_start(5, 10)).appointment  # fmt: skip
    call(harbor.admin, booking.book_appointment, provider_id=harbor.provider.id, start=local_start(5, 11),
         patient_id=add_patient(harbor, "Other").id)  # fmt: skip
    with pytest.raises(Conflict, match="taken"):
        call(harbor.patient_actor, booking.reschedule_appointment, mine.id, new_start=local_start(5, 11))
    assert rows(harbor, Notification, event_type="appointment_rescheduled") == []


# -- the beat task ----------------------------------------------------------------------------------------------


def test_the_beat_task_runs_every_minute_and_sends_what_is_due(harbor: Practice) -> None:
    entry = BEAT_SCHEDULE["notifications-send-reminders"]
    assert entry["task"] == "notifications.send_reminders_tick"
    assert entry["schedule"] == 60.0 and entry["options"] == {"expires": 60.0}
    soon = booked(harbor, utcnow() + 90 * timedelta(minutes=1))
    # Read the eager result's value rather than `.get()`: Celery keeps "are we inside a task" in one process-wide
    # flag that eager calls from two threads at once (the concurrent-sweep test above) can leave set, and
    # `.get()` then refuses to run.
    first, second = send_reminders_tick.apply(), send_reminders_tick.apply()
    assert first.successful() and first.result == 1
    assert second.successful() and second.result == 0
    assert len(reminder_notes(harbor, soon.id)) == 1
    assert done_offsets(harbor, soon.id) == [2880, 120]


# -- settings: service ------------------------------------------------------------------------------------------


def test_settings_default_then_override_audited(harbor: Practice) -> None:
    view = call(harbor.admin, reminders.get_notification_settings)
    assert (view.reminder_offsets_minutes, view.source, view.updated_at) == ([2880, 120], "default", None)
    view = call(harbor.admin, reminders.update_notification_settings, reminder_offsets_minutes=[60, 1440])
    assert (view.reminder_offsets_minutes, view.source) == ([1440, 60], "practice")
    (event,) = rows(harbor, AuditEvent, action="notification.settings_changed")
    assert event.data == {"reminder_offsets_minutes": [1440, 60], "before": None, "quiet_hours_email_now": True}
    # Saving the same offsets again changes (and audits) nothing.
    call(harbor.admin, reminders.update_notification_settings, reminder_offsets_minutes=[1440, 60])
    assert len(rows(harbor, AuditEvent, action="notification.settings_changed")) == 1
    call(harbor.admin, reminders.update_notification_settings, reminder_offsets_minutes=[])
    events = rows(harbor, AuditEvent, action="notification.settings_changed")
    assert sorted(len(e.data["reminder_offsets_minutes"]) for e in events) == [0, 2]
    assert call(harbor.admin, reminders.get_notification_settings).reminder_offsets_minutes == []


@pytest.mark.parametrize("role", ["doctor", "patient"])
def test_settings_are_admin_only(harbor: Practice, role: str) -> None:
    actor = harbor.actors[role]
    with pytest.raises(PermissionDenied):
        call(actor, reminders.get_notification_settings)
    with pytest.raises(PermissionDenied):
        call(actor, reminders.update_notification_settings, reminder_offsets_minutes=[60])
    assert rows(harbor, NotificationSettings) == []


def test_bad_offsets_change_nothing(harbor: Practice) -> None:
    call(harbor.admin, reminders.update_notification_settings, reminder_offsets_minutes=[120])
    for bad in ([10], [120, 120], [60, 120, 180, 240, 300], [20161]):
        with pytest.raises(ValidationFailed) as refused:
            call(harbor.admin, reminders.update_notification_settings, reminder_offsets_minutes=bad)
        assert refused.value.field == "reminder_offsets_minutes"
    (row,) = rows(harbor, NotificationSettings)
    assert row.reminder_offsets_minutes == [120]
    assert len(rows(harbor, AuditEvent, action="notification.settings_changed")) == 1


# -- settings: REST -----------------------------------------------------------------------------------------------


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(api) as c:
        yield c


URL = "/api/v1/notification-settings"


def test_rest_get_and_put(client: TestClient, harbor: Practice, summit: Practice) -> None:
    admin = bearer(client, harbor.admin_user.email)
    got = client.get(URL, headers=admin)
    assert got.status_code == 200, got.text
    assert got.json()["reminder_offsets_minutes"] == [2880, 120] and got.json()["source"] == "default"
    put = client.put(URL, headers=admin, json={"reminder_offsets_minutes": [120, 10080]})
    assert put.status_code == 200, put.text
    assert put.json()["reminder_offsets_minutes"] == [10080, 120] and put.json()["source"] == "practice"
    assert client.get(URL, headers=admin).json()["reminder_offsets_minutes"] == [10080, 120]
    # The other practice is untouched.
    theirs = client.get(URL, headers=bearer(client, summit.admin_user.email)).json()
    assert theirs["source"] == "default" and theirs["reminder_offsets_minutes"] == [2880, 120]
    assert rows(summit, NotificationSettings) == []


def test_rest_sets_the_quiet_hours_rule_and_keeps_it_when_omitted(client: TestClient, harbor: Practice) -> None:
    admin = bearer(client, harbor.admin_user.email)
    assert client.get(URL, headers=admin).json()["quiet_hours_email_now"] is True
    put = client.put(URL, headers=admin, json={"reminder_offsets_minutes": [120], "quiet_hours_email_now": False})
    assert put.status_code == 200, put.text
    assert put.json()["quiet_hours_email_now"] is False
    # Omitted: unchanged.
    again = client.put(URL, headers=admin, json={"reminder_offsets_minutes": [60]})
    assert again.json()["quiet_hours_email_now"] is False
    (row,) = rows(harbor, NotificationSettings)
    assert (row.reminder_offsets_minutes, row.quiet_hours_email_now) == ([60], False)
    assert len(rows(harbor, AuditEvent, action="notification.settings_changed")) == 2


@pytest.mark.parametrize("role", ["doctor", "patient"])
def test_rest_is_admin_only(client: TestClient, harbor: Practice, role: str) -> None:
    headers = bearer(client, harbor.emails[role])
    assert client.get(URL, headers=headers).status_code == 403
    assert client.put(URL, headers=headers, json={"reminder_offsets_minutes": [60]}).status_code == 403
    assert rows(harbor, NotificationSettings) == []


def test_rest_needs_a_token(client: TestClient, harbor: Practice) -> None:
    assert client.get(URL).status_code == 401
    assert client.put(URL, json={"reminder_offsets_minutes": [60]}).status_code == 401


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"reminder_offsets_minutes": [120, 120]}, "only once"),
        ({"reminder_offsets_minutes": [5]}, "between 15 minutes and 14 days"),
        ({"reminder_offsets_minutes": [30000]}, "between 15 minutes and 14 days"),
        ({"reminder_offsets_minutes": [20, 30, 40, 50, 60]}, "At most 4"),
        ({"reminder_offsets_minutes": ["120"]}, None),
        ({"reminder_offsets_minutes": [True]}, None),
        ({"reminder_offsets_minutes": [90.5]}, None),
        ({"reminder_offsets_minutes": None}, None),
        ({}, None),
        ({"reminder_offsets_minutes": [60], "bogus": 1}, None),
        ({"reminder_offsets_minutes": [60], "quiet_hours_email_now": "no"}, None),
    ],
)
def test_rest_refuses_bad_input_naming_the_field(
    client: TestClient, harbor: Practice, body: dict[str, Any], message: str | None
) -> None:
    admin = bearer(client, harbor.admin_user.email)
    assert client.put(URL, headers=admin, json={"reminder_offsets_minutes": [120]}).status_code == 200
    response = client.put(URL, headers=admin, json=body)
    assert response.status_code == 422, response.text
    detail = response.json()
    if message is not None:
        assert detail["field"] == "reminder_offsets_minutes"
        assert message in detail["detail"]
    else:
        locations = [item["loc"] for item in detail["detail"]]
        fields = ("reminder_offsets_minutes", "bogus", "quiet_hours_email_now")
        assert any(field in loc for loc in locations for field in fields), detail
    assert client.get(URL, headers=admin).json()["reminder_offsets_minutes"] == [120]
    (row,) = rows(harbor, NotificationSettings)
    assert row.reminder_offsets_minutes == [120]
    assert len(rows(harbor, AuditEvent, action="notification.settings_changed")) == 1
