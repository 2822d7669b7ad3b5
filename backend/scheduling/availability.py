"""Managing a provider's weekly availability and time off.

Who: a doctor manages their own availability; an admin (or the system) anyone's in the practice. Staff may
read any provider's availability; patients neither read nor write it (they see slots instead).

Rules live at the provider's open clinics. Replacing availability replaces the rules at open clinics; rules at
an archived clinic produce no slots and are left as they are, so restoring the clinic restores them.

Overlap: two rules may not overlap on the same weekday in wall-clock time, even at different clinics (a
provider cannot be in two places). Rules at clinics in different time zones are also compared in real
time over the coming year, so 09:00 in New York and 15:00 in Berlin are refused together as well.

Booked appointments are honoured when availability shrinks or time off is added: they stay, and the change's
audit event counts how many future appointments now lie outside the availability.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import delete
from sqlmodel import col, select

from backend import events
from backend.audit.service import record
from backend.db import UnitOfWork
from backend.errors import NotFound, PermissionDenied, ValidationFailed
from backend.identity.models import MODALITIES, Provider, ProviderClinic
from backend.scheduling import cache
from backend.scheduling.models import Appointment, AppointmentStatus, AvailabilityRule, TimeOff
from backend.scheduling.service import busy_intervals, weekly_rules
from backend.scheduling.slots import Interval, find_slot, overlaps
from backend.service import require_role, service_function
from backend.tenancy.context import Actor, Role
from backend.tenancy.models import Clinic
from backend.types import utcnow

__all__ = [
    "AvailabilityView",
    "RuleInput",
    "add_time_off",
    "list_availability",
    "remove_time_off",
    "replace_availability",
]

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
SESSION_MINUTES = (10, 240)
BUFFER_MINUTES = (0, 120)
MAX_RULES = 50
MAX_TIME_OFF = timedelta(days=366)
MAX_REASON = 200
# How far ahead rules in different time zones are compared in real time: a year covers every DST combination.
_REAL_TIME_CHECK = timedelta(days=371)


@dataclass(frozen=True)
class RuleInput:
    """One weekly block as submitted: wall-clock times in the clinic's zone."""

    clinic_id: uuid.UUID
    weekday: int
    start: time
    end: time
    session_minutes: int = 50
    buffer_minutes: int = 10
    modality: str = "in_person"
    valid_from: date | None = None
    valid_until: date | None = None


@dataclass(frozen=True)
class AvailabilityView:
    """A provider's availability for the editor."""

    provider_id: uuid.UUID
    rules: list[AvailabilityRule]  # at open clinics, by weekday and start
    time_off: list[TimeOff]  # time off from now on, sorted by start
    clinics: list[Clinic]  # open clinics the provider works at, by name


# -- who may -------------------------------------------------------------------------------------------


def _provider(uow: UnitOfWork, provider_id: uuid.UUID, *, lock: bool = False) -> Provider:
    query = select(Provider).where(Provider.id == provider_id)
    if lock:
        # Serialises concurrent edits of one provider: two replacements must not both add their rules.
        query = query.with_for_update()
    provider = uow.session.exec(query).first()
    if provider is None:
        raise NotFound("provider")
    return provider


def _may_edit(actor: Actor, provider_id: uuid.UUID) -> None:
    if actor.role == Role.DOCTOR and actor.provider_id != provider_id:
        raise PermissionDenied("doctors may change only their own availability")


def _clinics_of(uow: UnitOfWork, provider_id: uuid.UUID) -> list[Clinic]:
    return list(
        uow.session.exec(
            select(Clinic)
            .join(ProviderClinic, col(ProviderClinic.clinic_id) == Clinic.id)
            .where(ProviderClinic.provider_id == provider_id, col(Clinic.archived_at).is_(None))
            .order_by(col(Clinic.name))
        )
    )


def _open_rules(uow: UnitOfWork, provider_id: uuid.UUID) -> list[AvailabilityRule]:
    return list(
        uow.session.exec(
            select(AvailabilityRule)
            .join(Clinic, col(Clinic.id) == AvailabilityRule.clinic_id)
            .where(AvailabilityRule.provider_id == provider_id, col(Clinic.archived_at).is_(None))
            .order_by(col(AvailabilityRule.weekday), col(AvailabilityRule.start_time), col(AvailabilityRule.clinic_id))
        )
    )


# -- read ----------------------------------------------------------------------------------------------


@service_function
def list_availability(actor: Actor, uow: UnitOfWork, provider_id: uuid.UUID) -> AvailabilityView:
    """Return a provider's weekly rules, upcoming time off and clinics (staff)."""
    require_role(actor, Role.DOCTOR, Role.ADMIN)
    _provider(uow, provider_id)
    time_off = list(
        uow.session.exec(
            select(TimeOff)
            .where(TimeOff.provider_id == provider_id, TimeOff.end_at > utcnow())
            .order_by(col(TimeOff.start_at), col(TimeOff.id))
        )
    )
    return AvailabilityView(
        provider_id=provider_id,
        rules=_open_rules(uow, provider_id),
        time_off=time_off,
        clinics=_clinics_of(uow, provider_id),
    )


# -- weekly rules --------------------------------------------------------------------------------------


def _hhmm(value: time) -> str:
    return value.strftime("%H:%M")


def _label(index: int, rule: RuleInput, clinics: dict[uuid.UUID, Clinic]) -> str:
    """How a message names a rule: its position and, when readable, its day, hours and clinic."""
    text = f"rule {index + 1}"
    if isinstance(rule.weekday, int) and 0 <= rule.weekday <= 6:
        text += f" ({WEEKDAYS[rule.weekday]} {_hhmm(rule.start)}-{_hhmm(rule.end)}"
        clinic = clinics.get(rule.clinic_id)
        text += f" at {clinic.name})" if clinic else ")"
    return text


def _check_rule(index: int, rule: RuleInput, clinics: dict[uuid.UUID, Clinic]) -> None:
    """Refuse one rule that is invalid on its own, with a message naming it and the field."""
    label = _label(index, rule, clinics)

    def fail(message: str, name: str) -> ValidationFailed:
        return ValidationFailed(f"{label}: {message}", field=f"rules[{index}].{name}")

    if rule.clinic_id not in clinics:
        raise fail("the provider does not work at this clinic (or it is archived)", "clinic_id")
    if isinstance(rule.weekday, bool) or not isinstance(rule.weekday, int) or not 0 <= rule.weekday <= 6:
        raise fail("weekday must be 0 (Monday) to 6 (Sunday)", "weekday")
    if rule.start.tzinfo is not None or rule.end.tzinfo is not None:
        raise fail("start and end are wall-clock times in the clinic's zone, without an offset", "start")
    if not rule.start < rule.end:
        raise fail("start must be before end (a block cannot cross midnight)", "end")
    low, high = SESSION_MINUTES
    if not low <= rule.session_minutes <= high:
        raise fail(f"session length must be {low} to {high} minutes", "session_minutes")
    low, high = BUFFER_MINUTES
    if not low <= rule.buffer_minutes <= high:
        raise fail(f"buffer must be {low} to {high} minutes", "buffer_minutes")
    if rule.modality not in MODALITIES:
        raise fail("modality must be in_person or telehealth", "modality")
    block = datetime.combine(date.min, rule.end) - datetime.combine(date.min, rule.start)
    if block < timedelta(minutes=rule.session_minutes):
        raise fail(f"no {rule.session_minutes}-minute session fits between start and end", "end")
    if rule.valid_from is not None and rule.valid_until is not None and rule.valid_from > rule.valid_until:
        raise fail("valid_from must not be after valid_until", "valid_until")


def _validity_meets(a: RuleInput, b: RuleInput) -> bool:
    starts = [d for d in (a.valid_from, b.valid_from) if d is not None]
    ends = [d for d in (a.valid_until, b.valid_until) if d is not None]
    return not starts or not ends or max(starts) <= min(ends)


def _blocks(rule: RuleInput, zone: ZoneInfo, first: date, last: date) -> list[tuple[datetime, datetime, date]]:
    """The rule's blocks in UTC on its local dates in [first, last] (and within its validity)."""
    if rule.valid_from is not None and rule.valid_from > first:
        first = rule.valid_from
    if rule.valid_until is not None and rule.valid_until < last:
        last = rule.valid_until
    day = first + timedelta(days=(rule.weekday - first.weekday()) % 7)
    found = []
    while day <= last:
        start = datetime.combine(day, rule.start, tzinfo=zone).astimezone(UTC)
        end = datetime.combine(day, rule.end, tzinfo=zone).astimezone(UTC)
        found.append((start, end, day))
        day += timedelta(days=7)
    return found


def _real_time_clash(a: RuleInput, b: RuleInput, zones: tuple[ZoneInfo, ZoneInfo], today: date) -> date | None:
    """The first local date of `a` whose block meets one of `b` in real time, over the coming year."""
    first = max(d for d in (today - timedelta(days=1), a.valid_from, b.valid_from) if d is not None)
    last = first + _REAL_TIME_CHECK
    for until in (a.valid_until, b.valid_until):
        if until is not None and until < last:
            last = until
    # One day of slack on each side: the same instant can fall on neighbouring local dates in two zones.
    others = _blocks(b, zones[1], first - timedelta(days=1), last + timedelta(days=1))
    for start, end, day in _blocks(a, zones[0], first, last):
        if any(overlaps(start, end, o_start, o_end) for o_start, o_end, _ in others):
            return day
    return None


def _check_overlaps(rules: list[RuleInput], clinics: dict[uuid.UUID, Clinic]) -> None:
    """Refuse two rules that would need the provider in two places at once."""
    today = utcnow().date()
    for j, b in enumerate(rules):
        for i, a in enumerate(rules[:j]):
            if not _validity_meets(a, b):
                continue
            first_label, second_label = _label(i, a, clinics), _label(j, b, clinics)
            if a.weekday == b.weekday and a.start < b.end and b.start < a.end:
                raise ValidationFailed(
                    f"{second_label} overlaps {first_label}: a provider cannot be in two places at once",
                    field=f"rules[{j}].start",
                )
            zone_a, zone_b = clinics[a.clinic_id].timezone, clinics[b.clinic_id].timezone
            if zone_a == zone_b:
                continue  # in one zone the wall-clock comparison above is exact
            clash = _real_time_clash(a, b, (ZoneInfo(zone_a), ZoneInfo(zone_b)), today)
            if clash is not None:
                raise ValidationFailed(
                    f"{second_label} overlaps {first_label} in real time (their clinics are in different "
                    f"time zones), e.g. on {clash.isoformat()}: a provider cannot be in two places at once",
                    field=f"rules[{j}].start",
                )


def _outside_availability(uow: UnitOfWork, provider_id: uuid.UUID) -> int:
    """How many of the provider's future booked appointments no longer match a slot (time off counts too)."""
    now = utcnow()
    appointments = list(
        uow.session.exec(
            select(Appointment).where(
                Appointment.provider_id == provider_id,
                Appointment.status == AppointmentStatus.BOOKED,
                Appointment.start_at > now,
            )
        )
    )
    if not appointments:
        return 0
    rules = weekly_rules(uow, provider_id)
    last = max(a.end_at for a in appointments)
    time_off, _, _ = busy_intervals(uow, provider_id, now, last, now=now)
    outside = 0
    for appointment in appointments:
        at_clinic = [r for r in rules if r.clinic_id == appointment.clinic_id]
        slot = find_slot(at_clinic, appointment.start_at, include_taken=True, now=now)
        if slot is None or slot.end != appointment.end_at or _in_time_off(time_off, slot.start, slot.end):
            outside += 1
    return outside


def _in_time_off(time_off: list[Interval], start: datetime, end: datetime) -> bool:
    return any(overlaps(start, end, t.start, t.end) for t in time_off)


@service_function
def replace_availability(
    actor: Actor, uow: UnitOfWork, provider_id: uuid.UUID, rules: list[RuleInput]
) -> list[AvailabilityRule]:
    """Replace a provider's weekly rules at its open clinics (the doctor themself, or an admin)."""
    require_role(actor, Role.DOCTOR, Role.ADMIN)
    _provider(uow, provider_id, lock=True)
    _may_edit(actor, provider_id)
    if len(rules) > MAX_RULES:
        raise ValidationFailed(f"at most {MAX_RULES} weekly rules per provider", field="rules")
    clinics = {c.id: c for c in _clinics_of(uow, provider_id)}
    for index, rule in enumerate(rules):
        _check_rule(index, rule, clinics)
    _check_overlaps(rules, clinics)

    old = _open_rules(uow, provider_id)
    if old:
        uow.session.execute(delete(AvailabilityRule).where(col(AvailabilityRule.id).in_([r.id for r in old])))
    created = [
        AvailabilityRule(
            tenant_id=actor.tenant_id,
            provider_id=provider_id,
            clinic_id=rule.clinic_id,
            weekday=rule.weekday,
            start_time=rule.start,
            end_time=rule.end,
            session_minutes=rule.session_minutes,
            buffer_minutes=rule.buffer_minutes,
            modality=rule.modality,
            valid_from=rule.valid_from,
            valid_until=rule.valid_until,
        )
        for rule in rules
    ]
    uow.session.add_all(created)
    uow.flush()
    outside = _outside_availability(uow, provider_id)
    record(
        actor,
        uow,
        action="availability.replaced",
        entity_type="provider",
        entity_id=provider_id,
        data={
            "removed_rule_ids": [str(r.id) for r in old],
            "rule_ids": [str(r.id) for r in created],
            "appointments_outside_availability": outside,
        },
    )
    cache.invalidate_provider(uow, provider_id)
    events.emit(uow, "availability.changed", entity_id=provider_id, provider_id=provider_id)
    created.sort(key=lambda r: (r.weekday, r.start_time, str(r.clinic_id)))
    return created


# -- time off ------------------------------------------------------------------------------------------


@service_function
def add_time_off(
    actor: Actor,
    uow: UnitOfWork,
    provider_id: uuid.UUID,
    *,
    start: datetime,
    end: datetime,
    reason: str = "",
) -> TimeOff:
    """Block a span of time for a provider: no slots are offered in it (booked appointments stay)."""
    require_role(actor, Role.DOCTOR, Role.ADMIN)
    _provider(uow, provider_id, lock=True)
    _may_edit(actor, provider_id)
    for name, value in (("start", start), ("end", end)):
        if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
            raise ValidationFailed(f"time off {name} needs a time zone offset, e.g. 2026-03-02T09:00:00Z", field=name)
    if end <= start:
        raise ValidationFailed("time off must end after it starts", field="end")
    if end - start > MAX_TIME_OFF:
        raise ValidationFailed("time off can last at most 366 days; add another span for more", field="end")
    if end <= utcnow():
        raise ValidationFailed("time off must end in the future", field="end")
    reason = reason.strip()
    if len(reason) > MAX_REASON:
        raise ValidationFailed(f"the reason can have at most {MAX_REASON} characters", field="reason")

    time_off = TimeOff(
        tenant_id=actor.tenant_id,
        provider_id=provider_id,
        start_at=start.astimezone(UTC),
        end_at=end.astimezone(UTC),
        reason=reason,
    )
    uow.session.add(time_off)
    uow.flush()
    record(
        actor,
        uow,
        action="time_off.added",
        entity_type="time_off",
        entity_id=time_off.id,
        data={
            "provider_id": str(provider_id),
            "appointments_outside_availability": _outside_availability(uow, provider_id),
        },
    )
    cache.invalidate_provider(uow, provider_id)
    events.emit(uow, "availability.changed", entity_id=provider_id, provider_id=provider_id)
    return time_off


@service_function
def remove_time_off(actor: Actor, uow: UnitOfWork, time_off_id: uuid.UUID) -> None:
    """Remove a span of time off: its slots become bookable again."""
    require_role(actor, Role.DOCTOR, Role.ADMIN)
    time_off = uow.session.exec(select(TimeOff).where(TimeOff.id == time_off_id).with_for_update()).first()
    if time_off is None:
        raise NotFound("time off")
    _may_edit(actor, time_off.provider_id)
    provider_id = time_off.provider_id
    uow.session.delete(time_off)
    uow.flush()
    record(
        actor,
        uow,
        action="time_off.removed",
        entity_type="time_off",
        entity_id=time_off_id,
        data={"provider_id": str(provider_id)},
    )
    cache.invalidate_provider(uow, provider_id)
    events.emit(uow, "availability.changed", entity_id=provider_id, provider_id=provider_id)
