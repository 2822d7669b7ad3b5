"""The practice's insights, by week, clinic and provider: how cancelled slots are refilled, how offers fare,
no-shows and late cancellations, and the outbox's dead letters.

Definitions (every count is computed in the database, grouped there; nothing walks the rows in Python):

- a *cancellation* is a booked appointment cancelled by anyone (status cancelled or late_cancelled, by the moment
  it was cancelled). Holds that were never bookings are not: a hold that ran out or was released keeps its
  `hold_expires_at`, and a waitlist offer's hold released by a decline or expiry belongs to an offer that was not
  accepted.
- it is *filled* when another appointment of the same provider at the same start is booked (or later attended or
  missed); *from the waitlist* when that booking came from an accepted offer. Time to fill runs from the
  cancellation to the acceptance of that offer, or else to the creation of the new booking.
- *offers* are waitlist offers made in the range; acceptance rate = accepted / (accepted + declined + expired);
  offers per fill = offers made / offers accepted.
- *no-shows* are appointments in the range marked no-show; the no-show rate divides them by all appointments in
  the range whose attendance was recorded (completed or no-show).
"""

from __future__ import annotations

import statistics
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy import and_, case, exists, func, literal, or_
from sqlalchemy.orm import aliased
from sqlmodel import col, select

from backend.db import UnitOfWork
from backend.errors import NotFound, ValidationFailed
from backend.identity.models import Provider, ProviderClinic
from backend.notifications.models import Notification, NotificationStatus
from backend.scheduling.models import Appointment, AppointmentStatus
from backend.service import require_role, service_function
from backend.tenancy.context import Actor, Role
from backend.tenancy.models import Clinic
from backend.types import UTCDateTime, utcnow
from backend.waitlist.models import OfferStatus, WaitlistOffer

DEFAULT_WEEKS = 12
MAX_SPAN_DAYS = 731  # two years
DEAD_LETTERS_SHOWN = 20
_WEEK_SECONDS = 7 * 24 * 3600

_CANCELLED = (AppointmentStatus.CANCELLED, AppointmentStatus.LATE_CANCELLED)
# A booking in the slot that fills it: still booked, or attended or missed since, or cancelled late (it was booked).
_FILLING = (
    AppointmentStatus.BOOKED,
    AppointmentStatus.COMPLETED,
    AppointmentStatus.NO_SHOW,
    AppointmentStatus.LATE_CANCELLED,
)


class Figures(BaseModel):
    """The numbers of one group (the whole range, a week, a clinic or a provider)."""

    cancellations: int = 0
    late_cancellations: int = 0
    filled: int = 0
    filled_from_waitlist: int = 0
    fill_rate: float | None = None
    median_minutes_to_fill: float | None = None
    offers: int = 0
    offers_accepted: int = 0
    offers_declined: int = 0
    offers_expired: int = 0
    acceptance_rate: float | None = None
    offers_per_fill: float | None = None
    attendance_recorded: int = 0
    no_shows: int = 0
    no_show_rate: float | None = None


class WeekFigures(Figures):
    week_start: date


class ClinicFigures(Figures):
    clinic_id: uuid.UUID
    name: str


class ProviderFigures(Figures):
    provider_id: uuid.UUID
    name: str


class DeadLetter(BaseModel):
    """An outbox message that will not be retried by itself (ids and labels only, no patient data)."""

    id: uuid.UUID
    event_type: str
    channel: str
    attempts: int
    last_error: str
    created_at: datetime


class Insights(BaseModel):
    start: date
    end: date
    clinic_id: uuid.UUID | None
    provider_id: uuid.UUID | None
    totals: Figures
    weeks: list[WeekFigures]
    clinics: list[ClinicFigures]
    providers: list[ProviderFigures]
    dead_letters_total: int
    dead_letters: list[DeadLetter]


def default_range(today: date) -> tuple[date, date]:
    """The last DEFAULT_WEEKS weeks, Monday to `today` (this week included)."""
    monday = today - timedelta(days=today.weekday())
    return monday - timedelta(weeks=DEFAULT_WEEKS - 1), today


def _check_range(start: date | None, end: date | None) -> tuple[date, date]:
    """The range asked for, with defaults: up to today, and the DEFAULT_WEEKS weeks before its end."""
    today = utcnow().date()
    if end is None:
        end = today if start is None else max(start, min(today, start + timedelta(days=MAX_SPAN_DAYS)))
    if start is None:
        start = default_range(end)[0]
    if end < start:
        raise ValidationFailed("The end of the range must not be before its start.", field="to")
    if (end - start).days > MAX_SPAN_DAYS:
        raise ValidationFailed("The range may span at most two years.", field="from")
    return start, end


def _postgres(uow: UnitOfWork) -> bool:
    return uow.session.get_bind().dialect.name == "postgresql"


def _epoch(uow: UnitOfWork, value: Any) -> Any:
    """Seconds since 1970 of a timestamp expression, in SQL."""
    if _postgres(uow):
        return func.extract("epoch", value)
    return (func.julianday(value) - 2440587.5) * 86400.0


def _week_of(uow: UnitOfWork, value: Any, origin: datetime) -> Any:
    """The week (0, 1, ...) since `origin` that a timestamp at or after it falls in, in SQL."""
    weeks = (_epoch(uow, value) - origin.timestamp()) / _WEEK_SECONDS
    if _postgres(uow):
        return sa.cast(func.floor(weeks), sa.Integer)
    return sa.cast(weeks, sa.Integer)  # never negative here, so truncation is the floor


def _at(value: datetime) -> Any:
    """A bound timestamp stored the way the columns are (UTC; SQLite without the zone)."""
    return literal(value, UTCDateTime())


def _ratio(part: int, whole: int, digits: int = 3) -> float | None:
    return round(part / whole, digits) if whole else None


def _cancellation_facts(uow: UnitOfWork, lo: datetime, hi: datetime, origin: datetime, where: list[Any]) -> Any:
    """One row per cancellation in the range: where, which week, late or not, when (and whether from the
    waitlist) its slot was filled."""
    filler = aliased(Appointment)
    same_slot = and_(
        col(filler.provider_id) == col(Appointment.provider_id),
        col(filler.start_at) == col(Appointment.start_at),
        col(filler.id) != col(Appointment.id),
        col(filler.status).in_(_FILLING),
        # Booked after this cancellation: an earlier booking of the same time, cancelled late, filled nothing.
        col(filler.created_at) >= col(Appointment.cancelled_at),
    )
    # WaitlistOffer unaliased in each subquery: the tenant criterion of an aliased outer join would name the table.
    is_accepted = and_(
        col(WaitlistOffer.appointment_id) == col(filler.id), col(WaitlistOffer.status) == OfferStatus.ACCEPTED
    )
    filled_at = (
        select(func.min(func.coalesce(col(WaitlistOffer.responded_at), col(filler.created_at))))
        .select_from(filler)
        .outerjoin(WaitlistOffer, is_accepted)
        .where(same_slot)
        .scalar_subquery()
    )
    from_waitlist = exists(select(filler.id).join(WaitlistOffer, is_accepted).where(same_slot))
    released_offer_holds = select(WaitlistOffer.appointment_id).where(
        col(WaitlistOffer.appointment_id).is_not(None), col(WaitlistOffer.status) != OfferStatus.ACCEPTED
    )
    return (
        sa.select(
            col(Appointment.clinic_id).label("clinic_id"),
            col(Appointment.provider_id).label("provider_id"),
            _week_of(uow, col(Appointment.cancelled_at), origin).label("week"),
            case((col(Appointment.status) == AppointmentStatus.LATE_CANCELLED, 1), else_=0).label("late"),
            case((from_waitlist, 1), else_=0).label("from_waitlist"),
            (_epoch(uow, filled_at) - _epoch(uow, col(Appointment.cancelled_at))).label("fill_seconds"),
        )
        .where(
            col(Appointment.status).in_(_CANCELLED),
            col(Appointment.cancelled_at) >= _at(lo),
            col(Appointment.cancelled_at) < _at(hi),
            col(Appointment.hold_expires_at).is_(None),
            col(Appointment.id).not_in(released_offer_holds),
            *where,
        )
        .subquery("cancellations")
    )


def _offer_facts(uow: UnitOfWork, lo: datetime, hi: datetime, origin: datetime, where: list[Any]) -> Any:
    def status_is(status: OfferStatus) -> Any:
        return case((col(WaitlistOffer.status) == status, 1), else_=0)

    return (
        sa.select(
            col(WaitlistOffer.clinic_id).label("clinic_id"),
            col(WaitlistOffer.provider_id).label("provider_id"),
            _week_of(uow, col(WaitlistOffer.created_at), origin).label("week"),
            status_is(OfferStatus.ACCEPTED).label("accepted"),
            status_is(OfferStatus.DECLINED).label("declined"),
            status_is(OfferStatus.EXPIRED).label("expired"),
        )
        .where(col(WaitlistOffer.created_at) >= _at(lo), col(WaitlistOffer.created_at) < _at(hi), *where)
        .subquery("offers")
    )


def _attendance_facts(uow: UnitOfWork, lo: datetime, hi: datetime, origin: datetime, where: list[Any]) -> Any:
    return (
        sa.select(
            col(Appointment.clinic_id).label("clinic_id"),
            col(Appointment.provider_id).label("provider_id"),
            _week_of(uow, col(Appointment.start_at), origin).label("week"),
            case((col(Appointment.status) == AppointmentStatus.NO_SHOW, 1), else_=0).label("no_show"),
        )
        .where(
            col(Appointment.status).in_([AppointmentStatus.COMPLETED, AppointmentStatus.NO_SHOW]),
            col(Appointment.start_at) >= _at(lo),
            col(Appointment.start_at) < _at(hi),
            *where,
        )
        .subquery("attendance")
    )


_DIMENSIONS = ("total", "week", "clinic_id", "provider_id")
# GROUPING(week, clinic_id, provider_id) of each grouping set: a 1 bit for each column rolled up.
_GROUPING_BITS = {7: "total", 3: "week", 5: "clinic_id", 6: "provider_id"}
Grouped = dict[str, dict[Any, dict[str, Any]]]


def _grouped(uow: UnitOfWork, facts: Any, measures: dict[str, Any]) -> Grouped:
    """The measures of `facts` per dimension, {dimension: {key: {measure: value}}}: on PostgreSQL in one pass
    (GROUPING SETS, so the facts are computed once); on SQLite one GROUP BY per dimension."""
    labelled = [m.label(name) for name, m in measures.items()]
    out: Grouped = {d: {} for d in _DIMENSIONS}
    if _postgres(uow):
        dims = [facts.c.week, facts.c.clinic_id, facts.c.provider_id]
        sets = func.grouping_sets(sa.tuple_(), *(sa.tuple_(d) for d in dims))
        query = sa.select(func.grouping(*dims).label("which"), *dims, *labelled).select_from(facts).group_by(sets)
        for row in uow.session.execute(query):
            dimension = _GROUPING_BITS[row.which]
            out[dimension][0 if dimension == "total" else row._mapping[dimension]] = dict(row._mapping)
        return out
    for dimension in _DIMENSIONS:
        key = literal(0) if dimension == "total" else facts.c[dimension]
        query = sa.select(key.label("key"), *labelled).select_from(facts)
        if dimension != "total":
            query = query.group_by(key)
        out[dimension] = {row.key: dict(row._mapping) for row in uow.session.execute(query)}
    return out


def _median_fill_minutes(uow: UnitOfWork, facts: Any, cancellations: Grouped) -> dict[str, dict[Any, float]]:
    """The median time to fill per dimension, in minutes: on PostgreSQL already in `cancellations`
    (percentile_cont); SQLite has no percentile aggregate, so there one number per filled slot is read."""
    if _postgres(uow):
        return {
            d: {k: round(max(float(v["median"]), 0.0) / 60, 1) for k, v in by_key.items() if v["median"] is not None}
            for d, by_key in cancellations.items()
        }
    seconds = facts.c.fill_seconds
    samples: dict[str, dict[Any, list[float]]] = {d: defaultdict(list) for d in _DIMENSIONS}
    query = sa.select(facts.c.week, facts.c.clinic_id, facts.c.provider_id, seconds).where(seconds.is_not(None))
    for week, clinic_id, provider_id, value in uow.session.execute(query):
        for dimension, key in (("total", 0), ("week", week), ("clinic_id", clinic_id), ("provider_id", provider_id)):
            samples[dimension][key].append(max(float(value), 0.0))
    return {d: {k: round(statistics.median(v) / 60, 1) for k, v in by_key.items()} for d, by_key in samples.items()}


def _figures(
    key: Any,
    dimension: str,
    cancellations: Grouped,
    medians: dict[str, dict[Any, float]],
    offers: Grouped,
    attendance: Grouped,
) -> dict[str, Any]:
    c = cancellations[dimension].get(key, {})
    o = offers[dimension].get(key, {})
    a = attendance[dimension].get(key, {})
    cancelled, filled = int(c.get("cancellations") or 0), int(c.get("filled") or 0)
    made, accepted = int(o.get("offers") or 0), int(o.get("accepted") or 0)
    declined, expired = int(o.get("declined") or 0), int(o.get("expired") or 0)
    recorded, no_shows = int(a.get("recorded") or 0), int(a.get("no_shows") or 0)
    return {
        "cancellations": cancelled,
        "late_cancellations": int(c.get("late") or 0),
        "filled": filled,
        "filled_from_waitlist": int(c.get("from_waitlist") or 0),
        "fill_rate": _ratio(filled, cancelled),
        "median_minutes_to_fill": medians[dimension].get(key),
        "offers": made,
        "offers_accepted": accepted,
        "offers_declined": declined,
        "offers_expired": expired,
        "acceptance_rate": _ratio(accepted, accepted + declined + expired),
        "offers_per_fill": _ratio(made, accepted, 2),
        "attendance_recorded": recorded,
        "no_shows": no_shows,
        "no_show_rate": _ratio(no_shows, recorded),
    }


@service_function
def practice_insights(
    actor: Actor,
    uow: UnitOfWork,
    *,
    start: date | None = None,
    end: date | None = None,
    clinic_id: uuid.UUID | None = None,
    provider_id: uuid.UUID | None = None,
) -> Insights:
    """The practice's refill, offer, attendance and dead-letter figures for a range of days (admin)."""
    require_role(actor, Role.ADMIN)
    start, end = _check_range(start, end)
    clinics = list(uow.session.exec(select(Clinic).order_by(col(Clinic.name))))
    if clinic_id is not None and all(c.id != clinic_id for c in clinics):
        raise NotFound("clinic")
    if provider_id is not None and uow.session.get(Provider, provider_id) is None:
        raise NotFound("provider")

    lo = datetime.combine(start, time(0), tzinfo=UTC)
    hi = datetime.combine(end + timedelta(days=1), time(0), tzinfo=UTC)
    first_monday = start - timedelta(days=start.weekday())
    origin = datetime.combine(first_monday, time(0), tzinfo=UTC)

    def narrowed(model: type[Appointment] | type[WaitlistOffer]) -> list[Any]:
        where: list[Any] = []
        if clinic_id is not None:
            where.append(col(model.clinic_id) == clinic_id)
        if provider_id is not None:
            where.append(col(model.provider_id) == provider_id)
        return where

    cancel_facts = _cancellation_facts(uow, lo, hi, origin, narrowed(Appointment))
    measures: dict[str, Any] = {
        "cancellations": func.count(),
        "late": func.sum(cancel_facts.c.late),
        "filled": func.count(cancel_facts.c.fill_seconds),
        "from_waitlist": func.sum(cancel_facts.c.from_waitlist),
    }
    if _postgres(uow):
        measures["median"] = func.percentile_cont(0.5).within_group(cancel_facts.c.fill_seconds)
    cancellations = _grouped(uow, cancel_facts, measures)
    medians = _median_fill_minutes(uow, cancel_facts, cancellations)
    offer_facts = _offer_facts(uow, lo, hi, origin, narrowed(WaitlistOffer))
    offers = _grouped(
        uow,
        offer_facts,
        {
            "offers": func.count(),
            "accepted": func.sum(offer_facts.c.accepted),
            "declined": func.sum(offer_facts.c.declined),
            "expired": func.sum(offer_facts.c.expired),
        },
    )
    seen = _attendance_facts(uow, lo, hi, origin, narrowed(Appointment))
    attendance = _grouped(uow, seen, {"recorded": func.count(), "no_shows": func.sum(seen.c.no_show)})

    def figures(key: Any, dimension: str) -> dict[str, Any]:
        return _figures(key, dimension, cancellations, medians, offers, attendance)

    weeks = [
        WeekFigures(week_start=first_monday + timedelta(weeks=i), **figures(i, "week"))
        for i in range((end - first_monday).days // 7 + 1)
    ]

    def has_data(dimension: str, key: uuid.UUID) -> bool:
        return any(key in grouped[dimension] for grouped in (cancellations, offers, attendance))

    clinic_rows = [
        ClinicFigures(clinic_id=c.id, name=c.name, **figures(c.id, "clinic_id"))
        for c in clinics
        if (clinic_id is None or c.id == clinic_id)
        # For one provider: the clinics where they have figures; else every open clinic, and closed ones with figures.
        and (has_data("clinic_id", c.id) or (provider_id is None and c.archived_at is None))
    ]
    providers = select(Provider).order_by(col(Provider.full_name))
    if provider_id is not None:
        providers = providers.where(col(Provider.id) == provider_id)
    elif clinic_id is not None:
        at_clinic = select(ProviderClinic.provider_id).where(col(ProviderClinic.clinic_id) == clinic_id)
        with_data = {key for grouped in (cancellations, offers, attendance) for key in grouped["provider_id"]}
        providers = providers.where(or_(col(Provider.id).in_(at_clinic), col(Provider.id).in_(with_data)))
    provider_rows = [
        ProviderFigures(provider_id=p.id, name=p.full_name, **figures(p.id, "provider_id"))
        for p in uow.session.exec(providers)
        if p.active or has_data("provider_id", p.id)
    ]

    dead = col(Notification.status) == NotificationStatus.DEAD
    dead_total = int(uow.session.exec(select(func.count()).select_from(Notification).where(dead)).one())
    letters = uow.session.exec(
        select(Notification)
        .where(dead)
        .order_by(col(Notification.created_at).desc(), col(Notification.id))
        .limit(DEAD_LETTERS_SHOWN)
    )
    return Insights(
        start=start,
        end=end,
        clinic_id=clinic_id,
        provider_id=provider_id,
        totals=Figures(**figures(0, "total")),
        weeks=weeks,
        clinics=clinic_rows,
        providers=provider_rows,
        dead_letters_total=dead_total,
        dead_letters=[
            DeadLetter(
                id=n.id,
                event_type=n.event_type,
                channel=str(n.channel),
                attempts=n.attempts,
                last_error=n.last_error,
                created_at=n.created_at,
            )
            for n in letters
        ],
    )
