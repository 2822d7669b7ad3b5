"""Invariant 5, first half: every notifying change records its outbox rows in its own transaction.

Real PostgreSQL; Celery eager (delivery runs inline after commit, through a fake channel that counts sends).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy import update
from sqlmodel import col

from backend.db import UnitOfWork
from backend.notifications import channels, delivery, outbox
from backend.notifications.models import (
    Channel,
    Notification,
    NotificationDelivery,
    NotificationPreference,
    NotificationSettings,
    NotificationStatus,
)
from backend.scheduling import booking
from backend.types import utcnow
from backend.waitlist import offers
from backend.waitlist.models import WaitlistEntry
from backend.waitlist.tasks import expire_stale_entries
from backend.worker import celery_app
from tests.factories import (
    Practice,
    add_appointment,
    add_availability,
    add_waitlist_entry,
    local_start,
    make_practice,
    rows,
)
from tests.integration.test_offers import cancel, no_quiet_hours, pending_offers, scene_with_three, slot_at


class FakeChannel:
    """Counts sends per idempotency key; lookup answers from what it sent (or from `known`)."""

    def __init__(self) -> None:
        self.name = "fake"
        self.sent: list[channels.OutgoingMessage] = []
        self.errors: list[channels.ChannelError] = []
        self.known: dict[str, str | None] = {}

    def send(self, message: channels.OutgoingMessage) -> channels.SendResult:
        if self.errors:
            raise self.errors.pop(0)
        self.sent.append(message)
        return channels.SendResult(provider_message_id=f"fake-{len(self.sent)}")

    def lookup(
        self, idempotency_key: str, provider_message_id: str | None, *, message: channels.OutgoingMessage | None = None
    ) -> str | None:
        if idempotency_key in self.known:
            return self.known[idempotency_key]
        return "sent" if any(m.idempotency_key == idempotency_key for m in self.sent) else None


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeChannel:
    channel = FakeChannel()
    monkeypatch.setattr(channels, "channel_for", lambda name, settings=None: channel)
    monkeypatch.setattr(delivery, "throttle_wait", lambda tenant_id, notification_id: 0.0)
    return channel


@pytest.fixture(autouse=True)
def eager() -> Iterator[None]:
    before = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = before


@pytest.fixture
def harbor(db: sa.Engine) -> Practice:
    p = make_practice("Harbor Mental Health", "harbor")
    no_quiet_hours(p)
    return p


def notes(p: Practice, **where: Any) -> list[Notification]:
    return rows(p, Notification, **where)  # type: ignore[no-any-return]


def ledger(p: Practice, notification_id: uuid.UUID) -> NotificationDelivery:
    (row,) = rows(p, NotificationDelivery, notification_id=notification_id)
    return row  # type: ignore[no-any-return]


def set_pref(p: Practice, **fields: Any) -> None:
    with UnitOfWork(p.system) as uow:
        uow.session.add(NotificationPreference(tenant_id=p.tenant_id, patient_id=p.patient.id, **fields))
        uow.commit()


# -- same transaction -------------------------------------------------------------------------------------


def test_booking_records_and_delivers_its_notification(harbor: Practice, fake: FakeChannel) -> None:
    add_availability(harbor)
    with UnitOfWork(harbor.patient_actor) as uow:
        result = booking.book_appointment(harbor.patient_actor, uow, provider_id=harbor.provider.id,
                                          start=local_start(3, 10))  # fmt: skip
        # Inside the transaction, before commit: the row is there, nothing is sent yet.
        inside = uow.session.exec(sa.select(Notification.id)).all()  # type: ignore[call-overload]
        assert len(inside) == 1
        assert fake.sent == []
        uow.commit()
    (note,) = notes(harbor, event_type="appointment_booked")
    assert note.channel == Channel.CONSOLE  # console mode by default
    assert note.payload == {"appointment_id": str(result.appointment.id), "clinic_id": str(harbor.clinic.id),
                            "provider_id": str(harbor.provider.id)}  # fmt: skip
    assert note.status == NotificationStatus.SENT
    assert ledger(harbor, note.id).status == NotificationStatus.SENT
    assert [m.idempotency_key for m in fake.sent] == [str(note.id)]
    assert "Harbor Mental Health" in fake.sent[0].text or "Harbor Mental Health" in fake.sent[0].subject


def test_a_rolled_back_change_leaves_no_notification(harbor: Practice, fake: FakeChannel) -> None:
    add_availability(harbor)
    with UnitOfWork(harbor.patient_actor) as uow:
        booking.book_appointment(harbor.patient_actor, uow, provider_id=harbor.provider.id, start=local_start(3, 10))
        # no commit
    appointment = add_appointment(harbor, local_start(4, 10))
    with UnitOfWork(harbor.admin) as uow:
        booking.cancel_appointment(harbor.admin, uow, appointment.id)
        # no commit
    assert notes(harbor) == []
    assert rows(harbor, NotificationDelivery) == []
    assert fake.sent == []


def test_cancellation_notifies(harbor: Practice, fake: FakeChannel) -> None:
    appointment = add_appointment(harbor, local_start(4, 10))
    with UnitOfWork(harbor.admin) as uow:
        booking.cancel_appointment(harbor.admin, uow, appointment.id)
        uow.commit()
    (note,) = notes(harbor, event_type="appointment_cancelled")
    assert note.patient_id == harbor.patient.id
    assert note.status == NotificationStatus.SENT
    assert len(fake.sent) == 1


def test_offer_and_its_expiry_notify_the_waitlisted_patient(harbor: Practice, fake: FakeChannel) -> None:
    start = slot_at()
    booked, people = scene_with_three(harbor, start)
    cancel(harbor, booked)
    (offer,) = pending_offers(harbor)
    first = people[0][0]
    (offered,) = notes(harbor, event_type="waitlist_offer")
    assert offered.patient_id == first.id
    assert offered.payload["offer_id"] == str(offer.id)
    assert offered.status == NotificationStatus.SENT
    # Regression (issue 10, item 6): the message says how the held slot takes place.
    (message,) = [m for m in fake.sent if m.idempotency_key == str(offered.id)]
    assert "in-person" in message.text.lower() and "telehealth" not in message.text.lower()
    with UnitOfWork(harbor.system) as uow:
        offers.expire_due_offers(harbor.system, uow, now=offer.expires_at + timedelta(seconds=1))
        uow.commit()
    (expired,) = notes(harbor, event_type="waitlist_offer_expired")
    assert expired.patient_id == first.id
    # The cascade offered the slot to the next patient, who is notified too.
    assert {n.patient_id for n in notes(harbor, event_type="waitlist_offer")} == {first.id, people[1][0].id}


def test_entry_expiry_and_reconfirm_requests_notify(harbor: Practice, fake: FakeChannel) -> None:
    entry = add_waitlist_entry(harbor)
    with UnitOfWork(harbor.system) as uow:
        uow.session.execute(update(WaitlistEntry).where(col(WaitlistEntry.id) == entry.id)
                            .values(last_confirmed_at=utcnow() - timedelta(days=400)))  # fmt: skip
        uow.commit()
    with UnitOfWork(harbor.system) as uow:
        assert expire_stale_entries(harbor.system, uow) == (0, 1)
        uow.commit()
    assert [n.payload["entry_id"] for n in notes(harbor, event_type="waitlist_reconfirm")] == [str(entry.id)]
    with UnitOfWork(harbor.system) as uow:
        uow.session.execute(update(WaitlistEntry).where(col(WaitlistEntry.id) == entry.id)
                            .values(expires_at=utcnow() - timedelta(minutes=1)))  # fmt: skip
        uow.commit()
    with UnitOfWork(harbor.system) as uow:
        assert expire_stale_entries(harbor.system, uow) == (1, 0)
        # no commit: rolled back, so no row
    assert notes(harbor, event_type="waitlist_entry_expired") == []
    with UnitOfWork(harbor.system) as uow:
        assert expire_stale_entries(harbor.system, uow) == (1, 0)
        uow.commit()
    assert len(notes(harbor, event_type="waitlist_entry_expired")) == 1


# -- preferences ------------------------------------------------------------------------------------------


def test_opted_out_channels_never_get_rows(
    harbor: Practice, fake: FakeChannel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox, "channel_mode", lambda: "live")
    set_pref(harbor, email_opt_in=False, sms_opt_in=True, whatsapp_opt_in=True)
    appointment = add_appointment(harbor, local_start(4, 10))
    with UnitOfWork(harbor.admin) as uow:
        booking.cancel_appointment(harbor.admin, uow, appointment.id)
        uow.commit()
    assert sorted(n.channel for n in notes(harbor)) == [Channel.SMS, Channel.WHATSAPP]
    assert len(rows(harbor, NotificationDelivery)) == 2


def test_default_preferences_are_email_only_and_unsubscribed_patients_get_nothing(
    harbor: Practice, fake: FakeChannel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox, "channel_mode", lambda: "live")
    first = add_appointment(harbor, local_start(4, 10))
    with UnitOfWork(harbor.admin) as uow:
        booking.cancel_appointment(harbor.admin, uow, first.id)
        uow.commit()
    assert [n.channel for n in notes(harbor)] == [Channel.EMAIL]
    set_pref(harbor, sms_opt_in=True, unsubscribed_at=utcnow())
    second = add_appointment(harbor, local_start(5, 10))
    with UnitOfWork(harbor.admin) as uow:
        booking.cancel_appointment(harbor.admin, uow, second.id)
        uow.commit()
    assert len(notes(harbor)) == 1


def quiet_now(p: Practice, **fields: Any) -> datetime:
    """Quiet hours around "now" in the clinic's zone (New York), 2 h ago to 2 h ahead; returns their end."""
    ny = datetime.now(ZoneInfo(p.clinic.timezone))
    start, end = (ny - timedelta(hours=2)).time().replace(second=0, microsecond=0), \
        (ny + timedelta(hours=2)).time().replace(second=0, microsecond=0)  # fmt: skip
    set_pref(p, quiet_hours_start=start, quiet_hours_end=end, **fields)
    expected = datetime.combine(ny.date(), end, tzinfo=ZoneInfo(p.clinic.timezone))
    return (expected + timedelta(days=1) if expected <= ny else expected).astimezone(UTC)


def set_quiet_rule(p: Practice, *, email_now: bool) -> None:
    with UnitOfWork(p.system) as uow:
        uow.session.add(NotificationSettings(tenant_id=p.tenant_id, reminder_offsets_minutes=[2880, 120],
                                             quiet_hours_email_now=email_now))  # fmt: skip
        uow.commit()


def test_offers_wait_for_the_end_of_the_patients_quiet_hours(
    harbor: Practice, fake: FakeChannel, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_quiet_rule(harbor, email_now=False)  # the practice holds every channel in quiet hours
    ny = datetime.now(ZoneInfo(harbor.clinic.timezone))
    end = quiet_now(harbor).astimezone(ZoneInfo(harbor.clinic.timezone)).time()
    payload = {"offer_id": str(uuid.uuid4()), "clinic_id": str(harbor.clinic.id)}
    with UnitOfWork(harbor.system) as uow:
        (note,) = outbox.notify(harbor.system, uow, patient_id=harbor.patient.id, event_type="waitlist_offer",
                                payload=payload)  # fmt: skip
        booked = outbox.notify(harbor.system, uow, patient_id=harbor.patient.id, event_type="appointment_booked",
                               payload={"clinic_id": str(harbor.clinic.id)})  # fmt: skip
        uow.commit()
    expected = datetime.combine(ny.date(), end, tzinfo=ZoneInfo(harbor.clinic.timezone))
    if expected <= ny:
        expected += timedelta(days=1)
    assert note.next_attempt_at == expected.astimezone(UTC)
    assert ledger(harbor, note.id).next_attempt_at == expected.astimezone(UTC)
    assert ledger(harbor, note.id).status == NotificationStatus.PENDING  # not enqueued, not sent
    # Transactional messages are not held back.
    assert booked[0].next_attempt_at <= utcnow()
    assert delivery.deliver(note.id) == "not due"


def test_by_default_quiet_hours_hold_texts_while_email_goes_at_once(
    harbor: Practice, fake: FakeChannel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox, "channel_mode", lambda: "providers")
    until = quiet_now(harbor, email_opt_in=True, sms_opt_in=True, whatsapp_opt_in=True)
    payload = {"offer_id": str(uuid.uuid4()), "clinic_id": str(harbor.clinic.id)}
    with UnitOfWork(harbor.system) as uow:
        written = outbox.notify(harbor.system, uow, patient_id=harbor.patient.id, event_type="waitlist_offer",
                                payload=payload)  # fmt: skip
        uow.commit()
    due = {str(n.channel): n.next_attempt_at for n in written}
    assert set(due) == {"email", "sms", "whatsapp"}
    assert due["email"] <= utcnow()
    assert due["sms"] == due["whatsapp"] == until


def test_a_reminder_held_past_the_appointment_start_is_not_written(
    harbor: Practice, fake: FakeChannel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox, "channel_mode", lambda: "providers")
    quiet_now(harbor, email_opt_in=True, sms_opt_in=True)  # quiet for two more hours
    soon = add_appointment(harbor, utcnow() + timedelta(hours=1))
    later = add_appointment(harbor, utcnow() + timedelta(hours=5), patient=harbor.patient)
    def remind(uow: UnitOfWork, appointment_id: uuid.UUID) -> list[Notification]:
        payload = {"appointment_id": str(appointment_id), "clinic_id": str(harbor.clinic.id)}
        return outbox.notify(harbor.system, uow, patient_id=harbor.patient.id, event_type="appointment_reminder",
                             payload=payload)  # fmt: skip

    with UnitOfWork(harbor.system) as uow:
        first, second = remind(uow, soon.id), remind(uow, later.id)
        uow.commit()
    # The text would wait past the 1 h appointment: only the e-mail is written. The 5 h one gets both.
    assert [str(n.channel) for n in first] == ["email"]
    assert sorted(str(n.channel) for n in second) == ["email", "sms"]


def test_quiet_hours_window_crossing_midnight() -> None:
    zone = "America/New_York"
    moment = datetime(2026, 1, 10, 4, 0, tzinfo=UTC)  # 23:00 New York
    until = outbox.quiet_hours_end(time(21, 0), time(8, 0), moment, zone)
    assert until == datetime(2026, 1, 10, 13, 0, tzinfo=UTC)  # 08:00 New York the next morning
    assert outbox.quiet_hours_end(time(21, 0), time(8, 0), datetime(2026, 1, 10, 17, 0, tzinfo=UTC), zone) == \
        datetime(2026, 1, 10, 17, 0, tzinfo=UTC)  # fmt: skip


def test_payloads_carry_ids_only(harbor: Practice) -> None:
    with UnitOfWork(harbor.system) as uow, pytest.raises(TypeError):
        outbox.notify(harbor.system, uow, patient_id=harbor.patient.id, event_type="appointment_booked",
                      payload={"note": {"diagnosis": "x"}})  # type: ignore[dict-item]  # fmt: skip
