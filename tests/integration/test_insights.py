"""Insights: the service's figures from constructed data, an empty practice, the other practice's side, and the
REST route's answers (admin only, clear 4xx for bad ranges, another practice's clinic like a missing one)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from backend.api.app import api
from backend.db import UnitOfWork
from backend.errors import NotFound, PermissionDenied, ValidationFailed
from backend.identity.models import Provider
from backend.insights.service import DEFAULT_WEEKS, Insights, practice_insights
from backend.notifications.models import Channel, Notification, NotificationStatus
from backend.scheduling.models import Appointment, AppointmentStatus
from backend.waitlist.models import OfferStatus, WaitlistOffer
from tests.factories import Practice, add_provider, add_waitlist_entry, bearer, call, make_practice

INSIGHTS = "/api/v1/insights"
# Every constructed event lies on known days of one week, well inside the default range.
TODAY = datetime.now(UTC).date()
MONDAY = datetime.combine(TODAY - timedelta(days=TODAY.weekday() + 21), time(0), tzinfo=UTC)


def _at(days: float, hours: float = 0) -> datetime:
    return MONDAY + timedelta(days=days, hours=hours)


def _appointment(p: Practice, start: datetime, status: AppointmentStatus, *, provider: Provider | None = None,
                 clinic_id: uuid.UUID | None = None, **fields: Any) -> Appointment:  # fmt: skip
    with UnitOfWork(p.system) as uow:
        row = Appointment(
            tenant_id=p.tenant_id,
            provider_id=(provider or p.provider).id,
            patient_id=p.patient.id,
            clinic_id=clinic_id or p.clinic.id,
            start_at=start,
            end_at=start + timedelta(minutes=50),
            status=status,
            **fields,
        )
        uow.session.add(row)
        uow.commit()
    return row


def _offer(p: Practice, slot: Appointment, status: OfferStatus, *, created: datetime,
           responded: datetime | None = None, hold: Appointment | None = None) -> WaitlistOffer:  # fmt: skip
    entry = p.extra.get("entry") or add_waitlist_entry(p)
    p.extra["entry"] = entry
    with UnitOfWork(p.system) as uow:
        offer = WaitlistOffer(
            tenant_id=p.tenant_id,
            entry_id=entry.id,
            appointment_id=(hold or slot).id,
            provider_id=slot.provider_id,
            clinic_id=slot.clinic_id,
            slot_start=slot.start_at,
            slot_end=slot.end_at,
            status=status,
            expires_at=created + timedelta(minutes=30),
            responded_at=responded,
            created_at=created,
        )
        uow.session.add(offer)
        uow.commit()
    return offer


def _dead_letter(p: Practice, created: datetime) -> uuid.UUID:
    with UnitOfWork(p.system) as uow:
        note = Notification(
            tenant_id=p.tenant_id, patient_id=p.patient.id, event_type="appointment_booked", channel=Channel.SMS,
            status=NotificationStatus.DEAD, attempts=5, last_error="provider refused the number", created_at=created,
        )  # fmt: skip
        uow.session.add(note)
        uow.commit()
    return note.id


def _populate(p: Practice) -> dict[str, Any]:
    """Three cancellations (two filled: one from the waitlist after 60 min, one rebooked after 180 min), rows that
    are not cancellations (an expired hold, an offer's released hold), three offers, attendance, a dead letter."""
    second = add_provider(p, "Dr. Second Provider", clinic=p.clinic2)
    # Monday: cancelled, filled from the waitlist (offer accepted an hour after the cancellation).
    a1 = _appointment(p, _at(5, 14), AppointmentStatus.CANCELLED, cancelled_at=_at(0, 9))
    b1 = _appointment(p, _at(5, 14), AppointmentStatus.BOOKED, created_at=_at(0, 9.5))
    _offer(p, a1, OfferStatus.ACCEPTED, created=_at(0, 9.5), responded=_at(0, 10), hold=b1)
    # Tuesday: cancelled late, rebooked by hand three hours later, and the new booking was attended.
    _appointment(p, _at(3, 15), AppointmentStatus.LATE_CANCELLED, cancelled_at=_at(1, 12))
    _appointment(p, _at(3, 15), AppointmentStatus.COMPLETED, created_at=_at(1, 15))
    # Wednesday, the second provider at the second clinic: cancelled, never filled; its offer was declined, and
    # the offer's hold, released, is no cancellation.
    a3 = _appointment(p, _at(9, 10), AppointmentStatus.CANCELLED, provider=second, clinic_id=p.clinic2.id,
                      cancelled_at=_at(2, 8))  # fmt: skip
    hold = _appointment(p, _at(9, 10), AppointmentStatus.CANCELLED, provider=second, clinic_id=p.clinic2.id,
                        cancelled_at=_at(2, 9), created_at=_at(2, 8.5))  # fmt: skip
    _offer(p, a3, OfferStatus.DECLINED, created=_at(2, 8.5), responded=_at(2, 9), hold=hold)
    # Before that, an offer of the same slot expired; its released hold is no cancellation.
    lapsed = _appointment(p, _at(5, 14), AppointmentStatus.CANCELLED, cancelled_at=_at(0, 9.4), created_at=_at(0, 9.2))
    _offer(p, a1, OfferStatus.EXPIRED, created=_at(0, 9.2), responded=_at(0, 9.4), hold=lapsed)
    # A patient's hold that ran out: no cancellation either.
    _appointment(p, _at(4, 11), AppointmentStatus.CANCELLED, cancelled_at=_at(2, 10), hold_expires_at=_at(2, 10))
    # Attendance: a no-show and a completed visit besides the rebooked one.
    _appointment(p, _at(4, 16), AppointmentStatus.NO_SHOW)
    _appointment(p, _at(10, 16), AppointmentStatus.COMPLETED, provider=second, clinic_id=p.clinic2.id)
    dead = _dead_letter(p, _at(1, 1))
    return {"second": second, "dead": dead}


@pytest.fixture
def harbor(db: sa.Engine) -> Practice:
    return make_practice("Harbor Mental Health", "harbor")


@pytest.fixture
def summit(db: sa.Engine) -> Practice:
    return make_practice("Summit Counseling", "summit", zones=("America/Denver", "Asia/Tokyo"))


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(api) as c:
        yield c


def _insights(p: Practice, **kwargs: Any) -> Insights:
    result: Insights = call(p.admin, practice_insights, **kwargs)
    return result


def test_figures_from_constructed_data(harbor: Practice, summit: Practice) -> None:
    made = _populate(harbor)
    _populate(summit)  # the same again in the other practice: none of it may reach Harbor's figures
    found = _insights(harbor)
    totals = found.totals
    assert (totals.cancellations, totals.late_cancellations, totals.filled, totals.filled_from_waitlist) == (3, 1, 2, 1)
    assert totals.fill_rate == 0.667
    assert totals.median_minutes_to_fill == 120.0  # 60 and 180 minutes
    assert (totals.offers, totals.offers_accepted, totals.offers_declined, totals.offers_expired) == (3, 1, 1, 1)
    assert totals.acceptance_rate == 0.333 and totals.offers_per_fill == 3.0
    assert (totals.attendance_recorded, totals.no_shows, totals.no_show_rate) == (3, 1, 0.333)

    assert len(found.weeks) == DEFAULT_WEEKS
    week = next(w for w in found.weeks if w.week_start == MONDAY.date())
    assert (week.cancellations, week.filled, week.offers, week.no_shows) == (3, 2, 3, 1)
    assert sum(w.cancellations for w in found.weeks) == 3

    by_clinic = {c.clinic_id: c for c in found.clinics}
    assert set(by_clinic) == {harbor.clinic.id, harbor.clinic2.id}
    first, other = by_clinic[harbor.clinic.id], by_clinic[harbor.clinic2.id]
    assert (first.cancellations, first.filled, first.median_minutes_to_fill, first.offers) == (2, 2, 120.0, 2)
    assert (other.cancellations, other.filled, other.fill_rate, other.median_minutes_to_fill) == (1, 0, 0.0, None)
    assert (other.offers_declined, other.attendance_recorded, other.no_shows) == (1, 1, 0)

    by_provider = {p.provider_id: p for p in found.providers}
    assert set(by_provider) == {harbor.provider.id, made["second"].id}
    assert by_provider[harbor.provider.id].late_cancellations == 1
    assert by_provider[made["second"].id].name == "Dr. Second Provider"

    assert found.dead_letters_total == 1
    assert [(d.id, d.channel, d.attempts) for d in found.dead_letters] == [(made["dead"], "sms", 5)]


def test_filters_narrow_every_figure(harbor: Practice) -> None:
    made = _populate(harbor)
    by_clinic = _insights(harbor, clinic_id=harbor.clinic2.id)
    assert (by_clinic.totals.cancellations, by_clinic.totals.offers, by_clinic.totals.attendance_recorded) == (1, 1, 1)
    assert [c.clinic_id for c in by_clinic.clinics] == [harbor.clinic2.id]
    assert [p.provider_id for p in by_clinic.providers] == [made["second"].id]
    by_provider = _insights(harbor, provider_id=harbor.provider.id)
    assert (by_provider.totals.cancellations, by_provider.totals.filled_from_waitlist) == (2, 1)
    assert [p.provider_id for p in by_provider.providers] == [harbor.provider.id]
    assert [c.clinic_id for c in by_provider.clinics] == [harbor.clinic.id]  # only where that provider has figures
    # A week (Monday to Sunday) that ends before any of it: nothing counted, one week shown.
    early = _insights(harbor, start=MONDAY.date() - timedelta(days=14), end=MONDAY.date() - timedelta(days=8))
    assert early.totals.cancellations == early.totals.offers == 0 and len(early.weeks) == 1


def test_an_empty_practice_has_zeros_and_no_rates(harbor: Practice) -> None:
    found = _insights(harbor)
    assert found.totals.cancellations == found.totals.offers == found.totals.no_shows == 0
    assert found.totals.fill_rate is None and found.totals.median_minutes_to_fill is None
    assert found.totals.acceptance_rate is None and found.totals.offers_per_fill is None
    assert len(found.weeks) == DEFAULT_WEEKS and found.weeks[-1].week_start <= TODAY
    assert {c.clinic_id for c in found.clinics} == {harbor.clinic.id, harbor.clinic2.id}
    assert found.dead_letters_total == 0 and found.dead_letters == []


def test_the_other_practice_sees_only_its_own(harbor: Practice, summit: Practice) -> None:
    _populate(harbor)
    theirs = _insights(summit)
    assert theirs.totals.cancellations == theirs.totals.offers == theirs.dead_letters_total == 0
    assert {c.clinic_id for c in theirs.clinics} == {summit.clinic.id, summit.clinic2.id}
    assert [p.provider_id for p in theirs.providers] == [summit.provider.id]
    for foreign in ({"clinic_id": harbor.clinic.id}, {"provider_id": harbor.provider.id}):
        with pytest.raises(NotFound):
            _insights(summit, **foreign)


def test_only_admins_and_sane_ranges(harbor: Practice) -> None:
    for actor in (harbor.doctor, harbor.patient_actor):
        with pytest.raises(PermissionDenied):
            call(actor, practice_insights)
    with pytest.raises(ValidationFailed, match="before its start"):
        _insights(harbor, start=date(2026, 3, 2), end=date(2026, 3, 1))
    with pytest.raises(ValidationFailed, match="two years"):
        _insights(harbor, start=date(2023, 1, 1), end=date(2026, 1, 1))


def test_rest_route(client: TestClient, harbor: Practice, summit: Practice) -> None:
    _populate(harbor)
    admin = bearer(client, harbor.emails["admin"])
    start, end = MONDAY.date().isoformat(), (MONDAY.date() + timedelta(days=6)).isoformat()
    response = client.get(INSIGHTS, params={"from": start, "to": end}, headers=admin)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["start"], body["end"], len(body["weeks"])) == (start, end, 1)
    assert body["totals"]["cancellations"] == 3 and body["totals"]["median_minutes_to_fill"] == 120.0
    assert body["dead_letters_total"] == 1 and body["dead_letters"][0]["last_error"] == "provider refused the number"
    narrowed = client.get(INSIGHTS, params={"clinic_id": str(harbor.clinic2.id)}, headers=admin).json()
    assert narrowed["totals"]["cancellations"] == 1

    doctor = bearer(client, harbor.emails["doctor"])
    assert client.get(INSIGHTS, headers=doctor).status_code == 403
    assert client.get(INSIGHTS).status_code == 401
    for params, status, words in (
        ({"from": "2026-03-02", "to": "2026-03-01"}, 422, "before its start"),
        ({"from": "2022-01-01", "to": "2026-01-01"}, 422, "two years"),
        ({"from": "9999-12-31"}, 422, "year"),
        ({"to": "not a date"}, 422, ""),
        ({"clinic_id": str(summit.clinic.id)}, 404, "clinic"),
        ({"clinic_id": str(uuid.uuid4())}, 404, "clinic"),
        ({"provider_id": str(summit.provider.id)}, 404, "provider"),
    ):
        answer = client.get(INSIGHTS, params=params, headers=admin)
        assert answer.status_code == status, (params, answer.text)
        assert words in answer.text


def test_an_earlier_booking_of_the_same_time_fills_nothing(harbor: Practice) -> None:
    # Booked and cancelled late first; then booked again and cancelled: neither cancellation was filled.
    _appointment(harbor, _at(5, 9), AppointmentStatus.LATE_CANCELLED, created_at=_at(-5), cancelled_at=_at(0, 8))
    _appointment(harbor, _at(5, 9), AppointmentStatus.CANCELLED, created_at=_at(0, 9), cancelled_at=_at(1, 9))
    totals = _insights(harbor).totals
    assert (totals.cancellations, totals.filled, totals.median_minutes_to_fill) == (2, 0, None)
