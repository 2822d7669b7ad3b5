"""Recurring weekly sessions: local wall-clock time across DST, conflicts, all-or-nothing booking, cancellation."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlmodel import select

from backend.audit.models import AuditEvent
from backend.db import UnitOfWork
from backend.errors import Conflict, DomainError, NotFound, PermissionDenied, ValidationFailed
from backend.scheduling import booking, series
from backend.scheduling.models import Appointment, AppointmentStatus, AvailabilityRule
from backend.scheduling.series import SeriesOccurrence, SeriesResult
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

NY = ZoneInfo("America/New_York")


def ny(day: date, hour: int = 10, minute: int = 0) -> datetime:
    """hh:mm New York wall-clock time on `day`, as a UTC instant."""
    return datetime.combine(day, time(hour, minute), tzinfo=NY).astimezone(UTC)


@pytest.fixture
def harbor(db: sa.Engine) -> Practice:
    """The doctor works every day 08:00-20:00 New York time; bookings open 400 days ahead, one hour's notice."""
    p = make_practice("Harbor Mental Health", "harbor")
    add_availability(p)
    set_booking_policy(p, horizon_days=400, min_notice_minutes=60)
    return p


@pytest.fixture
def summit(db: sa.Engine) -> Practice:
    p = make_practice("Summit Counseling", "summit", zones=("America/Denver", "Asia/Tokyo"))
    add_availability(p)
    return p


def run(actor: Actor, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    with UnitOfWork(actor) as uow:
        result = fn(actor, uow, *args, **kwargs)
        uow.commit()
        return result


def preview(p: Practice, first: datetime, actor: Actor | None = None, **kwargs: Any) -> list[SeriesOccurrence]:
    kwargs.setdefault("provider_id", p.provider.id)
    return run(actor or p.patient_actor, series.preview_series, first_start=first, **kwargs)  # type: ignore[no-any-return]


def book_series(p: Practice, first: datetime, actor: Actor | None = None, **kwargs: Any) -> SeriesResult:
    kwargs.setdefault("provider_id", p.provider.id)
    return run(actor or p.patient_actor, series.book_series, first_start=first, **kwargs)  # type: ignore[no-any-return]


def footprint(p: Practice) -> tuple[int, int]:
    return len(rows(p, Appointment)), len(rows(p, AuditEvent))


def statuses(p: Practice, appointments: list[Appointment]) -> list[str]:
    found = {a.id: a.status for a in rows(p, Appointment)}
    return [str(found[a.id]) for a in appointments]


# -- DST ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first_day", "every_weeks", "utc_hours"),
    [
        # Spring forward on Sunday 2027-03-14: 10:00 EST is 15:00 UTC, 10:00 EDT is 14:00 UTC.
        (date(2027, 3, 1), 1, [15, 15, 14, 14]),
        (date(2027, 2, 22), 2, [15, 15, 14, 14]),
        # Fall back on Sunday 2027-11-07.
        (date(2027, 10, 25), 1, [14, 14, 15, 15]),
    ],
)
def test_a_series_keeps_its_local_time_across_dst(
    harbor: Practice, first_day: date, every_weeks: int, utc_hours: list[int]
) -> None:
    first = ny(first_day)
    occurrences = preview(harbor, first, every_weeks=every_weeks, count=4)
    assert [o.available for o in occurrences] == [True] * 4
    assert [o.start.astimezone(UTC).hour for o in occurrences] == utc_hours
    assert [o.start.astimezone(NY).time() for o in occurrences] == [time(10)] * 4
    assert [o.start.astimezone(NY).date() for o in occurrences] == [
        first_day + timedelta(weeks=k * every_weeks) for k in range(4)
    ]
    assert all(o.end - o.start == timedelta(minutes=50) for o in occurrences)

    result = book_series(harbor, first, every_weeks=every_weeks, count=4)
    assert [a.start_at for a in result.booked] == [o.start for o in occurrences]
    assert [a.start_at.astimezone(NY).hour for a in result.booked] == [10] * 4
    assert {a.series_id for a in result.booked} == {result.series_id}
    assert result.skipped == []


def test_first_start_in_another_offset_counts_in_the_clinics_zone(harbor: Practice) -> None:
    first = ny(date(2027, 3, 1)).astimezone(ZoneInfo("Asia/Tokyo"))  # Tuesday 00:00 in Tokyo
    occurrences = preview(harbor, first, count=3)
    assert [o.start.astimezone(NY).date() for o in occurrences] == [
        date(2027, 3, 1),
        date(2027, 3, 8),
        date(2027, 3, 15),
    ]
    assert [o.start.astimezone(NY).hour for o in occurrences] == [10, 10, 10]


def test_until_is_a_local_date_and_inclusive(harbor: Practice) -> None:
    occurrences = preview(harbor, ny(date(2027, 3, 1)), until=date(2027, 3, 29))
    assert [o.start.astimezone(NY).date().day for o in occurrences] == [1, 8, 15, 22, 29]
    occurrences = preview(harbor, ny(date(2027, 3, 1)), until=date(2027, 3, 28), every_weeks=2)
    assert [o.start.astimezone(NY).date().day for o in occurrences] == [1, 15]


def test_a_local_time_that_does_not_exist_that_day_is_outside_availability(harbor: Practice) -> None:
    # A Sunday-night block at 02:00; on 2027-03-14 New York clocks jump from 02:00 to 03:00.
    add_availability(harbor, 6, start=time(2), end=time(3, 30))
    occurrences = preview(harbor, ny(date(2027, 3, 7), hour=2), count=3)
    assert [(o.available, o.reason) for o in occurrences] == [
        (True, ""),
        (False, "Outside availability"),
        (True, ""),
    ]
    result = book_series(harbor, ny(date(2027, 3, 7), hour=2), count=3, skip_unavailable=True)
    assert [a.start_at.astimezone(NY).hour for a in result.booked] == [2, 2]


# -- validation -----------------------------------------------------------------------------------------

FIRST = date(2027, 3, 1)

INVALID: dict[str, tuple[type[DomainError], str, dict[str, Any]]] = {
    "count and until": (ValidationFailed, "either", {"count": 3, "until": date(2027, 4, 1)}),
    "neither count nor until": (ValidationFailed, "either", {}),
    "no sessions": (ValidationFailed, "1 to 52", {"count": 0}),
    "too many sessions": (ValidationFailed, "1 to 52", {"count": 53}),
    "every three weeks": (ValidationFailed, "every_weeks", {"count": 3, "every_weeks": 3}),
    "every zero weeks": (ValidationFailed, "every_weeks", {"count": 3, "every_weeks": 0}),
    "until before the first": (ValidationFailed, "before the first", {"until": date(2027, 2, 28)}),
    "until beyond the horizon": (ValidationFailed, "booking horizon", {"until": date(2028, 3, 1)}),
    "until giving 53 sessions": (
        ValidationFailed,
        "at most 52",
        {"until": date(2027, 12, 20), "first_start": ny(date(2026, 12, 14))},
    ),
    "first start between sessions": (
        ValidationFailed,
        "No session starts",
        {"count": 3, "first_start": ny(FIRST, 10, 30)},
    ),
    "first start at night": (ValidationFailed, "No session starts", {"count": 3, "first_start": ny(FIRST, 22)}),
    "first start in the past": (ValidationFailed, "in the past", {"count": 3, "first_start": ny(date(2026, 11, 2))}),
    "naive first start": (ValidationFailed, "time zone offset", {"count": 3, "first_start": datetime(2027, 3, 1, 15)}),  # noqa: DTZ001
    "unknown provider": (NotFound, "provider not found", {"count": 3, "provider_id": uuid.uuid4()}),
}


@pytest.mark.parametrize("fn", [series.preview_series, series.book_series])
@pytest.mark.parametrize("case", sorted(INVALID))
def test_an_invalid_series_is_refused_with_a_clear_message_and_writes_nothing(
    harbor: Practice, case: str, fn: Callable[..., Any]
) -> None:
    error, message, kwargs = INVALID[case]
    kwargs = {"provider_id": harbor.provider.id, "first_start": ny(FIRST), **kwargs}
    before = footprint(harbor)
    with pytest.raises(error) as refused:
        run(harbor.patient_actor, fn, **kwargs)
    assert message in refused.value.message
    assert footprint(harbor) == before


def test_another_tenants_provider_is_not_found(harbor: Practice, summit: Practice) -> None:
    for fn in (series.preview_series, series.book_series):
        with pytest.raises(NotFound, match="provider not found"):
            run(harbor.patient_actor, fn, provider_id=summit.provider.id, first_start=ny(FIRST), count=2)


def test_who_may_preview_and_book(harbor: Practice, summit: Practice) -> None:
    first = ny(FIRST)
    with pytest.raises(PermissionDenied):
        preview(harbor, first, harbor.doctor, count=2)
    with pytest.raises(PermissionDenied):
        book_series(harbor, first, harbor.doctor, count=2, patient_id=harbor.patient.id)
    other = add_patient(harbor, "Someone Else")
    with pytest.raises(PermissionDenied):
        book_series(harbor, first, count=2, patient_id=other.id)
    with pytest.raises(ValidationFailed, match="patient_id is required"):
        book_series(harbor, first, harbor.admin, count=2)
    with pytest.raises(NotFound, match="patient not found"):
        book_series(harbor, first, harbor.admin, count=2, patient_id=summit.patient.id)
    assert footprint(harbor) == (0, 0)
    # An admin may preview without a patient, and books naming one.
    assert len(preview(harbor, first, harbor.admin, count=2)) == 2
    result = book_series(harbor, first, harbor.admin, count=2, patient_id=other.id)
    assert {a.patient_id for a in result.booked} == {other.id}
    assert {a.booked_by_user_id for a in result.booked} == {harbor.admin_user.id}


# -- conflicts ------------------------------------------------------------------------------------------


def _conflicted(p: Practice) -> datetime:
    """A six-week series from Monday 2027-03-01 10:00 New York time with a different problem in weeks 2-5."""
    first = ny(FIRST)
    add_appointment(p, ny(date(2027, 3, 8)), patient=add_patient(p, "Booked Before"))
    add_time_off(p, ny(date(2027, 3, 15), 0), ny(date(2027, 3, 16), 0), reason="conference")
    other_doc = add_provider(p, "Olive Other")
    add_appointment(p, ny(date(2027, 3, 22)), provider=other_doc)  # the patient is busy elsewhere
    # From 2027-03-29 the doctor's day starts at 11:00.
    with UnitOfWork(p.system) as uow:
        for rule in uow.session.exec(select(AvailabilityRule)):
            rule.valid_until = date(2027, 3, 28)
            uow.session.add(rule)
        uow.commit()
    add_availability(p, start=time(11), valid_from=date(2027, 3, 29), valid_until=date(2027, 4, 4))
    add_availability(p, valid_from=date(2027, 4, 5))
    return first


EXPECTED_REASONS = [
    "",
    "Already booked",
    "Provider on time off",
    "You already have an appointment then",
    "Outside availability",
    "",
]


def test_preview_tells_why_each_date_cannot_be_booked(harbor: Practice) -> None:
    first = _conflicted(harbor)
    before = footprint(harbor)
    occurrences = preview(harbor, first, count=6)
    assert [o.reason for o in occurrences] == EXPECTED_REASONS
    assert [o.available for o in occurrences] == [not r for r in EXPECTED_REASONS]
    assert footprint(harbor) == before
    # Without a patient (an admin looking) the patient's own clash is not a reason.
    as_admin = preview(harbor, first, harbor.admin, count=6)
    assert [o.reason for o in as_admin][3] == ""
    as_admin_for_patient = preview(harbor, first, harbor.admin, count=6, patient_id=harbor.patient.id)
    assert [o.reason for o in as_admin_for_patient] == EXPECTED_REASONS


def test_a_live_hold_counts_as_booked_and_an_expired_one_does_not(harbor: Practice) -> None:
    first = ny(FIRST)
    other = Actor(tenant_id=harbor.tenant_id, role=Role.PATIENT, patient_id=add_patient(harbor, "Holder").id)
    hold = run(other, booking.hold_slot, provider_id=harbor.provider.id, start=ny(date(2027, 3, 8)))
    assert [o.reason for o in preview(harbor, first, count=2)] == ["", "Already booked"]
    with UnitOfWork(harbor.system) as uow:
        row = uow.session.get(Appointment, hold.id)
        assert row is not None
        row.hold_expires_at = utcnow() - timedelta(seconds=1)
        uow.session.add(row)
        uow.commit()
    assert [o.reason for o in preview(harbor, first, count=2)] == ["", ""]
    result = book_series(harbor, first, count=2)
    assert len(result.booked) == 2


def test_dates_beyond_the_horizon_are_reported(harbor: Practice) -> None:
    set_booking_policy(harbor, horizon_days=90)
    first = local_start(80, 10)
    occurrences = preview(harbor, first, count=4)
    assert [o.reason for o in occurrences] == ["", "", "Beyond the booking horizon", "Beyond the booking horizon"]
    with pytest.raises(ValidationFailed, match="90 days ahead"):
        preview(harbor, local_start(95, 10), count=1)


def test_booking_a_series_with_unavailable_dates_names_them_and_books_nothing(harbor: Practice) -> None:
    first = _conflicted(harbor)
    before = footprint(harbor)
    with pytest.raises(Conflict) as refused:
        book_series(harbor, first, count=6)
    message = refused.value.message
    for expected in (
        "Mon 2027-03-08 (Already booked)",
        "Mon 2027-03-15 (Provider on time off)",
        "Mon 2027-03-22 (You already have an appointment then)",
        "Mon 2027-03-29 (Outside availability)",
    ):
        assert expected in message
    assert "2027-03-01" not in message and "2027-04-05" not in message
    assert "Nothing was booked" in message
    assert footprint(harbor) == before


def test_skip_unavailable_books_the_rest_under_one_series_id(harbor: Practice) -> None:
    first = _conflicted(harbor)
    result = book_series(harbor, first, count=6, skip_unavailable=True)
    assert [a.start_at for a in result.booked] == [ny(date(2027, 3, 1)), ny(date(2027, 4, 5))]
    assert all(a.status == AppointmentStatus.BOOKED for a in result.booked)
    assert {a.series_id for a in result.booked} == {result.series_id}
    assert [o.reason for o in result.skipped] == [r for r in EXPECTED_REASONS if r]
    mine = rows(harbor, Appointment, series_id=result.series_id)
    assert {a.id for a in mine} == {a.id for a in result.booked}
    # Audited: each appointment, and the series as a whole.
    for appointment in result.booked:
        assert [e.action for e in rows(harbor, AuditEvent, entity_id=appointment.id)] == ["appointment.booked"]
    (event,) = rows(harbor, AuditEvent, entity_id=result.series_id)
    assert event.action == "appointment.series_booked"
    assert event.data["appointments"] == [str(a.id) for a in result.booked]
    assert len(event.data["skipped"]) == 4


def test_a_series_with_no_bookable_date_is_a_conflict_even_when_skipping(harbor: Practice) -> None:
    add_appointment(harbor, ny(FIRST), patient=add_patient(harbor, "Booked Before"))
    before = footprint(harbor)
    with pytest.raises(Conflict, match="None of these dates"):
        book_series(harbor, ny(FIRST), count=1, skip_unavailable=True)
    assert footprint(harbor) == before


def test_a_failure_midway_books_nothing(harbor: Practice, monkeypatch: pytest.MonkeyPatch) -> None:
    real = booking.book_appointment
    calls: list[datetime] = []

    def flaky(actor: Actor, uow: UnitOfWork, **kwargs: Any) -> booking.BookingResult:
        calls.append(kwargs["start"])
        if len(calls) == 3:
            raise Conflict(booking.SLOT_TAKEN)
        return real(actor, uow, **kwargs)

    monkeypatch.setattr(booking, "book_appointment", flaky)
    with pytest.raises(Conflict):
        book_series(harbor, ny(FIRST), count=5)
    assert len(calls) == 3
    assert footprint(harbor) == (0, 0)


def test_a_series_goes_through_the_constraints_like_any_booking(
    harbor: Practice, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A date taken but hidden from the preview (as if booked between the check and the insert): the guarded
    # path and the database still refuse it, and the dates booked before it are rolled back with it.
    add_appointment(harbor, ny(date(2027, 3, 8)), patient=add_patient(harbor, "Quicker"))
    monkeypatch.setattr(series, "busy_intervals", lambda *args, **kwargs: ([], [], []))
    assert all(o.available for o in preview(harbor, ny(FIRST), count=3))
    with pytest.raises(Conflict, match="taken"):
        book_series(harbor, ny(FIRST), count=3)
    assert len(rows(harbor, Appointment)) == 1


# -- cancellation ---------------------------------------------------------------------------------------


def test_cancel_this_or_this_and_the_following(harbor: Practice) -> None:
    result = book_series(harbor, ny(FIRST), count=5)
    first, second, third, fourth, fifth = result.booked
    lone = run(
        harbor.patient_actor, booking.book_appointment, provider_id=harbor.provider.id, start=ny(date(2027, 5, 3))
    ).appointment

    cancelled = run(harbor.patient_actor, series.cancel_series, second.id, scope="this", reason="away")
    assert [a.id for a in cancelled] == [second.id]
    assert statuses(harbor, result.booked) == ["booked", "cancelled", "booked", "booked", "booked"]

    cancelled = run(harbor.patient_actor, series.cancel_series, third.id, scope="following", reason="moving")
    assert [a.id for a in cancelled] == [third.id, fourth.id, fifth.id]
    assert all(a.cancel_reason == "moving" for a in cancelled)
    assert statuses(harbor, result.booked) == ["booked", "cancelled", "cancelled", "cancelled", "cancelled"]
    assert statuses(harbor, [lone]) == ["booked"]
    for appointment in cancelled:
        actions = [e.action for e in rows(harbor, AuditEvent, entity_id=appointment.id)]
        assert actions == ["appointment.booked", "appointment.cancelled"]
    (event,) = [e for e in rows(harbor, AuditEvent, entity_id=result.series_id) if e.action.endswith("cancelled")]
    assert event.data == {"scope": "following", "appointments": [str(a.id) for a in cancelled]}

    # "following" from a cancelled date cancels the booked ones after it; with none left it is a conflict.
    with pytest.raises(Conflict, match="already cancelled"):
        run(harbor.patient_actor, series.cancel_series, second.id, scope="following")
    with pytest.raises(Conflict, match="already cancelled"):
        run(harbor.patient_actor, series.cancel_series, second.id, scope="this")
    assert statuses(harbor, [first]) == ["booked"]


def test_following_from_a_cancelled_date_cancels_the_later_ones(harbor: Practice) -> None:
    result = book_series(harbor, ny(FIRST), count=3)
    first, second, third = result.booked
    run(harbor.patient_actor, series.cancel_series, first.id, scope="this")
    cancelled = run(harbor.patient_actor, series.cancel_series, first.id, scope="following")
    assert [a.id for a in cancelled] == [second.id, third.id]


def test_a_patients_late_cancellation_applies_to_the_dates_inside_the_window(harbor: Practice) -> None:
    soon = _next_slot_after(timedelta(hours=2))
    result = book_series(harbor, soon, count=3)
    cancelled = run(harbor.patient_actor, series.cancel_series, result.booked[0].id, scope="following")
    assert [str(a.status) for a in cancelled] == ["late_cancelled", "cancelled", "cancelled"]

    again = book_series(harbor, soon + timedelta(hours=1), count=3)
    by_doctor = run(harbor.doctor, series.cancel_series, again.booked[0].id)  # "following" is the default
    assert [str(a.status) for a in by_doctor] == ["cancelled", "cancelled", "cancelled"]


def _next_slot_after(delay: timedelta) -> datetime:
    """The first whole hour between 08:00 and 19:00 New York time at least `delay` from now."""
    candidate = (utcnow() + delay).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    while not 8 <= candidate.astimezone(NY).hour <= 18:
        candidate += timedelta(hours=1)
    return candidate


def test_past_dates_of_a_series_are_left_alone(harbor: Practice) -> None:
    series_id = uuid.uuid4()
    with UnitOfWork(harbor.system) as uow:
        for start in (utcnow() - timedelta(days=7), local_start(3, 10), local_start(10, 10)):
            uow.session.add(
                Appointment(
                    tenant_id=harbor.tenant_id, provider_id=harbor.provider.id, patient_id=harbor.patient.id,
                    clinic_id=harbor.clinic.id, start_at=start, end_at=start + timedelta(minutes=50),
                    series_id=series_id,
                )
            )  # fmt: skip
        uow.commit()
    past, upcoming, later = sorted(rows(harbor, Appointment), key=lambda a: a.start_at)
    with pytest.raises(ValidationFailed, match="already started"):
        run(harbor.admin, series.cancel_series, past.id, scope="this")
    cancelled = run(harbor.admin, series.cancel_series, upcoming.id, scope="following")
    assert [a.id for a in cancelled] == [upcoming.id, later.id]
    assert statuses(harbor, [past]) == ["booked"]


def test_only_who_may_see_it_cancels_a_series(harbor: Practice, summit: Practice) -> None:
    result = book_series(harbor, ny(FIRST), count=2)
    stranger = Actor(tenant_id=harbor.tenant_id, role=Role.PATIENT, patient_id=add_patient(harbor, "Stranger").id)
    for actor in (stranger, summit.admin, summit.patient_actor, summit.doctor):
        with pytest.raises(NotFound, match="appointment not found"):
            run(actor, series.cancel_series, result.booked[0].id)
    with pytest.raises(ValidationFailed, match="scope"):
        run(harbor.patient_actor, series.cancel_series, result.booked[0].id, scope="all")
    assert statuses(harbor, result.booked) == ["booked", "booked"]


def test_cancel_series_of_a_single_appointment_cancels_just_it(harbor: Practice) -> None:
    single = run(
        harbor.patient_actor, booking.book_appointment, provider_id=harbor.provider.id, start=ny(FIRST)
    ).appointment
    cancelled = run(harbor.patient_actor, series.cancel_series, single.id, scope="following")
    assert [a.id for a in cancelled] == [single.id]


def test_the_patients_own_hold_is_given_back_and_booked_as_part_of_the_series(harbor: Practice) -> None:
    # The portal's flow: the patient holds the first date, previews, then books the series in one unit of work
    # that first releases the hold.
    hold = run(harbor.patient_actor, booking.hold_slot, provider_id=harbor.provider.id, start=ny(FIRST))
    assert [o.reason for o in preview(harbor, ny(FIRST), count=3)] == ["Already booked", "", ""]
    with UnitOfWork(harbor.patient_actor) as uow:
        booking.release_hold(harbor.patient_actor, uow, hold.id)
        result = series.book_series(
            harbor.patient_actor, uow, provider_id=harbor.provider.id, first_start=ny(FIRST), count=3
        )
        uow.commit()
    assert [a.start_at for a in result.booked] == [ny(FIRST), ny(date(2027, 3, 8)), ny(date(2027, 3, 15))]
    assert statuses(harbor, [hold]) == ["cancelled"]
