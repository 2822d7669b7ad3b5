"""Recurring weekly sessions: preview the dates, book them as one series, cancel one or the rest.

Occurrences keep the first session's local wall-clock time in its clinic's zone: the k-th date is the first
start's local date and time plus k * every_weeks weeks, converted to UTC on its own date, so a 10:00 session
stays 10:00 across a DST change (its UTC time moves). Every appointment goes through the guarded booking path
(`booking.book_appointment`) in the caller's one unit of work: a series is booked entirely or not at all.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlmodel import col, select

from backend.audit.service import record
from backend.db import UnitOfWork
from backend.errors import Conflict, ValidationFailed
from backend.identity.models import Provider
from backend.scheduling import booking
from backend.scheduling.models import ACTIVE_APPOINTMENT_STATUSES, Appointment, AppointmentStatus
from backend.scheduling.policy import booking_rules, can_see_appointment, visible_appointment
from backend.scheduling.service import busy_intervals, weekly_rules
from backend.scheduling.slots import Interval, find_slot, overlaps
from backend.service import require_role, service_function
from backend.tenancy.context import Actor, Role
from backend.types import new_id, utcnow

MAX_SESSIONS = 52
EVERY_WEEKS = (1, 2)
SCOPES = ("this", "following")

TAKEN = "Already booked"
TIME_OFF = "Provider on time off"
OUTSIDE = "Outside availability"
PATIENT_BUSY = "You already have an appointment then"
BEYOND_HORIZON = "Beyond the booking horizon"


@dataclass(frozen=True)
class SeriesOccurrence:
    """One date of a series: its UTC start and end, and why it cannot be booked ("" when it can)."""

    start: datetime
    end: datetime
    available: bool
    reason: str = ""


@dataclass(frozen=True)
class SeriesResult:
    series_id: uuid.UUID
    booked: list[Appointment]
    skipped: list[SeriesOccurrence]


@dataclass(frozen=True)
class _Plan:
    provider: Provider
    patient_id: uuid.UUID | None
    modality: str
    timezone: str
    occurrences: list[SeriesOccurrence]


def _local_to_utc(naive: datetime, zone: ZoneInfo) -> datetime | None:
    """UTC of a local wall-clock time (first occurrence when ambiguous), None in the spring-forward gap."""
    utc = naive.replace(tzinfo=zone).astimezone(UTC)
    return utc if utc.astimezone(zone).replace(tzinfo=None) == naive else None


def _local_starts(first_local: datetime, every_weeks: int, count: int | None, until: date | None) -> list[datetime]:
    """The series' local wall-clock starts (naive, in the clinic's zone)."""
    step = timedelta(weeks=every_weeks)
    if count is not None:
        return [first_local + k * step for k in range(count)]
    starts: list[datetime] = []
    current = first_local
    while until is not None and current.date() <= until:
        starts.append(current)
        current += step
    return starts


def _check_shape(every_weeks: int, count: int | None, until: date | None) -> None:
    if isinstance(every_weeks, bool) or every_weeks not in EVERY_WEEKS:
        raise ValidationFailed("every_weeks must be 1 (weekly) or 2 (every other week).", field="every_weeks")
    if (count is None) == (until is None):
        raise ValidationFailed("Give either the number of sessions (count) or an end date (until).", field="count")
    if count is not None and (isinstance(count, bool) or not 1 <= count <= MAX_SESSIONS):
        raise ValidationFailed(f"A series has 1 to {MAX_SESSIONS} sessions.", field="count")


def _plan(
    actor: Actor,
    uow: UnitOfWork,
    *,
    provider_id: uuid.UUID,
    first_start: datetime,
    every_weeks: int,
    count: int | None,
    until: date | None,
    patient_id: uuid.UUID | None,
    patient_required: bool,
) -> _Plan:
    """Validate a series request and tell, date by date, whether it can be booked (nothing is written)."""
    if patient_required or actor.role == Role.PATIENT or patient_id is not None:
        patient: uuid.UUID | None = booking._patient_for(actor, uow, patient_id)
    else:
        require_role(actor, Role.ADMIN)
        patient = None
    _check_shape(every_weeks, count, until)
    provider = booking._provider(uow, provider_id)
    first_start = booking._aware(first_start, "first_start")
    now = utcnow()
    if first_start <= now:
        raise ValidationFailed("The first session is in the past.", field="first_start")
    rules = weekly_rules(uow, provider.id)
    if not rules:
        raise ValidationFailed("This provider has no bookable hours.", field="first_start")
    # The first date fixes the clinic (its zone) and the modality; time off or a booking on it is reported
    # like on any other date, but a time that is no session at all is refused.
    anchor = find_slot(rules, first_start, include_taken=True)
    if anchor is None:
        raise ValidationFailed(
            "No session starts at that time (outside the provider's availability). Choose one of the free slots.",
            field="first_start",
        )
    policy = booking_rules(uow, anchor.clinic_id)
    if anchor.start < now + policy.min_notice:
        raise ValidationFailed(f"Bookings need at least {booking._humanize(policy.min_notice)} notice.",
                               field="first_start")  # fmt: skip
    horizon_end = now + policy.horizon
    if anchor.start > horizon_end:
        raise ValidationFailed(f"Bookings open {booking._humanize(policy.horizon)} ahead.", field="first_start")
    zone = ZoneInfo(anchor.timezone)
    first_local = anchor.start.astimezone(zone).replace(tzinfo=None)
    if until is not None:
        if until < first_local.date():
            raise ValidationFailed("The end date is before the first session.", field="until")
        if until > horizon_end.astimezone(zone).date():
            raise ValidationFailed(
                f"The end date must be within the booking horizon ({booking._humanize(policy.horizon)} ahead).",
                field="until",
            )
    local_starts = _local_starts(first_local, every_weeks, count, until)
    if len(local_starts) > MAX_SESSIONS:
        raise ValidationFailed(f"A series has at most {MAX_SESSIONS} sessions; choose an earlier end date.",
                               field="until")  # fmt: skip

    series_rules = [r for r in rules if r.clinic_id == anchor.clinic_id and r.modality == anchor.modality]
    session = anchor.end - anchor.start
    span_start = anchor.start
    span_end = (local_starts[-1] + timedelta(days=2)).replace(tzinfo=zone).astimezone(UTC)
    time_off, booked, held = busy_intervals(uow, provider.id, span_start, span_end, now=now)
    taken = booked + held
    mine = _patient_busy(uow, patient, span_start, span_end, now) if patient is not None else []

    occurrences: list[SeriesOccurrence] = []
    for local in local_starts:
        start = _local_to_utc(local, zone)
        if start is None:  # the local time does not exist that day (spring forward)
            shifted = local.replace(tzinfo=zone).astimezone(UTC)
            occurrences.append(SeriesOccurrence(shifted, shifted + session, False, OUTSIDE))
            continue
        slot = find_slot(series_rules, start, include_taken=True, now=now)
        end = slot.end if slot is not None else start + session
        if start > horizon_end:
            reason = BEYOND_HORIZON
        elif slot is None:
            reason = OUTSIDE
        elif _hits(time_off, start, end):
            reason = TIME_OFF
        elif _hits(taken, start, end):
            reason = TAKEN
        elif _hits(mine, start, end):
            reason = PATIENT_BUSY
        else:
            reason = ""
        occurrences.append(SeriesOccurrence(start, end, not reason, reason))
    return _Plan(provider, patient, anchor.modality, anchor.timezone, occurrences)


def _hits(intervals: list[Interval], start: datetime, end: datetime) -> bool:
    return any(overlaps(i.start, i.end, start, end) for i in intervals)


def _patient_busy(
    uow: UnitOfWork, patient_id: uuid.UUID, start: datetime, end: datetime, now: datetime
) -> list[Interval]:
    """The patient's booked appointments and live holds (with any provider) that touch [start, end)."""
    rows = uow.session.exec(
        select(Appointment).where(
            Appointment.patient_id == patient_id,
            col(Appointment.status).in_(ACTIVE_APPOINTMENT_STATUSES),
            Appointment.start_at < end,
            Appointment.end_at > start,
        )
    )
    return [
        Interval(a.start_at, a.end_at)
        for a in rows
        if a.status == AppointmentStatus.BOOKED or (a.hold_expires_at is not None and a.hold_expires_at > now)
    ]


def _dates(occurrences: list[SeriesOccurrence], timezone: str) -> str:
    zone = ZoneInfo(timezone)
    return ", ".join(f"{o.start.astimezone(zone):%a %Y-%m-%d} ({o.reason})" for o in occurrences)


@service_function
def preview_series(
    actor: Actor,
    uow: UnitOfWork,
    *,
    provider_id: uuid.UUID,
    first_start: datetime,
    every_weeks: int = 1,
    count: int | None = None,
    until: date | None = None,
    patient_id: uuid.UUID | None = None,
) -> list[SeriesOccurrence]:
    """Every date of a weekly series with whether it can be booked and, if not, why. Writes nothing.

    A patient previews for themself; an admin may name the patient (to see the patient's own clashes).
    """
    return _plan(
        actor,
        uow,
        provider_id=provider_id,
        first_start=first_start,
        every_weeks=every_weeks,
        count=count,
        until=until,
        patient_id=patient_id,
        patient_required=False,
    ).occurrences


@service_function
def book_series(
    actor: Actor,
    uow: UnitOfWork,
    *,
    provider_id: uuid.UUID,
    first_start: datetime,
    every_weeks: int = 1,
    count: int | None = None,
    until: date | None = None,
    patient_id: uuid.UUID | None = None,
    skip_unavailable: bool = False,
) -> SeriesResult:
    """Book every date of a weekly series under one series id, in the caller's unit of work.

    If any date cannot be booked the whole request is refused (409, naming the dates) unless
    `skip_unavailable`, which books the others. Any failure while booking leaves nothing booked.
    """
    plan = _plan(
        actor,
        uow,
        provider_id=provider_id,
        first_start=first_start,
        every_weeks=every_weeks,
        count=count,
        until=until,
        patient_id=patient_id,
        patient_required=True,
    )
    free = [o for o in plan.occurrences if o.available]
    skipped = [o for o in plan.occurrences if not o.available]
    if not free:
        raise Conflict(f"None of these dates can be booked: {_dates(skipped, plan.timezone)}.")
    if skipped and not skip_unavailable:
        raise Conflict(
            f"Some dates cannot be booked: {_dates(skipped, plan.timezone)}. Nothing was booked; "
            "choose another time or book the series without those dates."
        )
    series_id = new_id()
    booked = [
        booking.book_appointment(
            actor,
            uow,
            provider_id=plan.provider.id,
            start=o.start,
            modality=plan.modality,
            patient_id=plan.patient_id,
            series_id=series_id,
        ).appointment
        for o in free
    ]
    record(
        actor,
        uow,
        action="appointment.series_booked",
        entity_type="appointment_series",
        entity_id=series_id,
        data={
            "appointments": [str(a.id) for a in booked],
            "every_weeks": every_weeks,
            "skipped": [o.start.isoformat() for o in skipped],
        },
    )
    return SeriesResult(series_id=series_id, booked=booked, skipped=skipped)


@service_function
def cancel_series(
    actor: Actor, uow: UnitOfWork, appointment_id: uuid.UUID, *, scope: str = "following", reason: str = ""
) -> list[Appointment]:
    """Cancel one appointment of a series ("this") or it and every later booked one ("following").

    Each goes through `booking.cancel_appointment`: the same permissions, late-cancellation rule, audit
    event and notification as a single cancellation. Returns the cancelled appointments, earliest first.
    """
    if scope not in SCOPES:
        raise ValidationFailed("scope must be 'this' or 'following'", field="scope")
    anchor = visible_appointment(actor, uow, appointment_id)
    if scope == "this" or anchor.series_id is None:
        return [booking.cancel_appointment(actor, uow, appointment_id, reason=reason)]
    now = utcnow()
    later = uow.session.exec(
        select(Appointment)
        .where(
            Appointment.series_id == anchor.series_id,
            Appointment.status == AppointmentStatus.BOOKED,
            Appointment.start_at > anchor.start_at,
            Appointment.start_at > now,
        )
        .order_by(col(Appointment.start_at))
    )
    targets = [a.id for a in later if can_see_appointment(actor, a)]
    if anchor.status == AppointmentStatus.BOOKED or not targets:
        # The chosen appointment itself first (it explains a refusal when nothing is left to cancel).
        targets.insert(0, anchor.id)
    cancelled = [booking.cancel_appointment(actor, uow, target, reason=reason) for target in targets]
    record(
        actor,
        uow,
        action="appointment.series_cancelled",
        entity_type="appointment_series",
        entity_id=anchor.series_id,
        data={"scope": scope, "appointments": [str(a.id) for a in cancelled]},
    )
    return cancelled
