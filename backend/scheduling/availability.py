"""Managing a provider's weekly availability and time off.

Who: a doctor manages their own availability; an admin (or the system) anyone's in the practice. Staff may
read any provider's availability; patients neither read nor write it (they see slots instead).

Rules live at the provider's open clinics. Replacing availability replaces the rules at open clinics; rules at
an archived clinic produce no slots and are left as they are, so restoring the clinic restores them.

Overlap: two rules may not overlap on the same weekday in wall-clock time, even at different clinics (a
provider cannot be in two places). Rules at clinics in different time zones are also compared in real
time over the coming year, so 09:00 in New York and 15:00 in Berlin are refused together as well.

Booked appointments are honoured when availability shrinks: they stay, and the change's audit event counts how
many future appointments now lie outside the availability. Time off over booked (or held) sessions needs the
doctor's choice: `preview_time_off` lists them; `add_time_off(booked_sessions="cancel")` cancels each through the
normal cancel path (the patient is notified, the waitlist cascade runs), `"keep"` leaves them booked (the
availability view then lists them as sessions during time off). Without a choice it is refused
(code time_off.overlaps_sessions) and nothing is written.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import delete, or_
from sqlmodel import col, select

from backend import events
from backend.audit.service import record, record_access
from backend.db import UnitOfWork
from backend.errors import Code, Conflict, NotFound, PermissionDenied, ValidationFailed
from backend.identity.models import MODALITIES, Patient, Provider, ProviderClinic
from backend.scheduling import booking, cache
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
    "SessionInTimeOff",
    "add_time_off",
    "list_availability",
    "preview_time_off",
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
class SessionInTimeOff:
    """A booked (or held) session of the provider that lies in a span of time off."""

    appointment_id: uuid.UUID
    start_at: datetime
    end_at: datetime
    status: str  # booked | held
    patient_id: uuid.UUID | None
    patient_name: str  # "" for a hold (whom a slot is held for stays off the doctor's pages)
    clinic_id: uuid.UUID
    clinic_name: str
    clinic_timezone: str
    modality: str


@dataclass(frozen=True)
class AvailabilityView:
    """A provider's availability for the editor."""

    provider_id: uuid.UUID
    rules: list[AvailabilityRule]  # at open clinics, by weekday and start
    time_off: list[TimeOff]  # time off from now on, sorted by start
    clinics: list[Clinic]  # open clinics the provider works at, by name
    # Future sessions kept booked (or held) inside that time off: for the provider themself and admins only.
    sessions_in_time_off: list[SessionInTimeOff] = field(default_factory=list)


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
    # Another clinician's patients are not this doctor's to see: only the provider themself and admins get them.
    own = actor.role != Role.DOCTOR or actor.provider_id == provider_id
    in_time_off: dict[uuid.UUID, SessionInTimeOff] = {}
    if own:
        for span in time_off:
            for session in _sessions_in(uow, provider_id, span.start_at, span.end_at):
                in_time_off.setdefault(session.appointment_id, session)
    return AvailabilityView(
        provider_id=provider_id,
        rules=_open_rules(uow, provider_id),
        time_off=time_off,
        clinics=_clinics_of(uow, provider_id),
        sessions_in_time_off=sorted(in_time_off.values(), key=lambda x: (x.start_at, str(x.appointment_id))),
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


TIME_OFF_CHOICES = ("cancel", "keep")
# The cancellation reason the patient sees: the doctor's own reason for the time off stays private.
TIME_OFF_CANCEL_REASON = "Your clinician is not available at this time. Please book another time."


def _check_span(start: datetime, end: datetime, reason: str) -> str:
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
    return reason


def _sessions_in(uow: UnitOfWork, provider_id: uuid.UUID, start: datetime, end: datetime) -> list[SessionInTimeOff]:
    """The provider's booked sessions and live holds that start later than now and overlap [start, end)."""
    now = utcnow()
    query = (
        select(Appointment, Clinic, Patient)
        .join(Clinic, col(Clinic.id) == Appointment.clinic_id)
        .outerjoin(Patient, col(Patient.id) == Appointment.patient_id)
        .where(
            Appointment.provider_id == provider_id,
            col(Appointment.status).in_((AppointmentStatus.BOOKED, AppointmentStatus.HELD)),
            Appointment.start_at > now,
            Appointment.start_at < end.astimezone(UTC),
            Appointment.end_at > start.astimezone(UTC),
            or_(
                col(Appointment.status) != AppointmentStatus.HELD,
                col(Appointment.hold_expires_at).is_(None),
                col(Appointment.hold_expires_at) > now,
            ),
        )
        .order_by(col(Appointment.start_at), col(Appointment.id))
    )
    return [
        SessionInTimeOff(
            appointment_id=a.id,
            start_at=a.start_at,
            end_at=a.end_at,
            status=str(a.status),
            patient_id=a.patient_id if a.status == AppointmentStatus.BOOKED else None,
            patient_name=patient.full_name if patient is not None and a.status == AppointmentStatus.BOOKED else "",
            clinic_id=clinic.id,
            clinic_name=clinic.name,
            clinic_timezone=clinic.timezone,
            modality=a.modality,
        )
        for a, clinic, patient in uow.session.exec(query)
    ]


@service_function
def preview_time_off(
    actor: Actor, uow: UnitOfWork, provider_id: uuid.UUID, *, start: datetime, end: datetime
) -> list[SessionInTimeOff]:
    """The booked (or held) sessions a span of time off would cover, soonest first (the doctor themself, admin)."""
    require_role(actor, Role.DOCTOR, Role.ADMIN)
    _provider(uow, provider_id)
    _may_edit(actor, provider_id)
    _check_span(start, end, "")
    sessions = _sessions_in(uow, provider_id, start, end)
    record_access(actor, uow, action="time_off.preview", patient_ids=[s.patient_id for s in sessions])
    return sessions


def _release_hold(actor: Actor, uow: UnitOfWork, hold_id: uuid.UUID) -> None:
    """Free a held slot in the time off: a waitlist offer on it is withdrawn (its entry waits again), a patient's
    own hold is released."""
    from backend.waitlist.models import EntryStatus, OfferStatus, WaitlistEntry, WaitlistOffer
    from backend.waitlist.offers import withdraw_live_offer

    offer = uow.session.exec(
        select(WaitlistOffer).where(
            WaitlistOffer.appointment_id == hold_id, WaitlistOffer.status == OfferStatus.PENDING
        )
    ).first()
    entry = uow.session.get(WaitlistEntry, offer.entry_id, with_for_update=True) if offer is not None else None
    if entry is not None:
        withdraw_live_offer(actor, uow, entry)
        uow.session.refresh(entry)
        if entry.status == EntryStatus.OFFERED:  # the offers engine leaves the entry's status to its caller
            entry.status = EntryStatus.WAITING
            entry.version += 1
            entry.updated_at = utcnow()
            uow.session.add(entry)
            record(actor, uow, action="waitlist.entry_returned", entity_type="waitlist_entry", entity_id=entry.id,
                   data={"offer_id": str(offer.id) if offer else None, "offer_outcome": "withdrawn"})  # fmt: skip
            events.emit(uow, "waitlist.entry_updated", entity_id=entry.id, status=str(entry.status),
                        provider_id=entry.provider_id, clinic_id=entry.clinic_id,
                        patient_id=entry.patient_id)  # fmt: skip
        return
    hold = uow.session.get(Appointment, hold_id, with_for_update=True)
    if hold is None or hold.status != AppointmentStatus.HELD:
        return
    now = utcnow()
    hold.status = AppointmentStatus.CANCELLED
    hold.cancel_reason = "hold released"
    hold.cancelled_at = now
    hold.hold_expires_at = None
    hold.version += 1
    hold.updated_at = now
    uow.session.add(hold)
    record(actor, uow, action="appointment.hold_released", entity_type="appointment", entity_id=hold.id,
           data={"reason": "time_off"})  # fmt: skip
    events.emit(uow, "slot.freed", entity_id=hold.id, provider_id=hold.provider_id, patient_id=hold.patient_id)
    cache.invalidate_provider(uow, hold.provider_id)


@service_function
def add_time_off(
    actor: Actor,
    uow: UnitOfWork,
    provider_id: uuid.UUID,
    *,
    start: datetime,
    end: datetime,
    reason: str = "",
    booked_sessions: str | None = None,
) -> TimeOff:
    """Block a span of time for a provider: no slots are offered in it.

    Booked (or held) sessions in it need a choice: `booked_sessions="cancel"` cancels each by the clinic (the
    patient is notified and the freed time goes through the waitlist cascade, which finds it blocked), `"keep"`
    leaves them as they are. Without a choice, time off over sessions is refused (Conflict, code
    time_off.overlaps_sessions, params: sessions) and nothing is written."""
    require_role(actor, Role.DOCTOR, Role.ADMIN)
    _provider(uow, provider_id, lock=True)
    _may_edit(actor, provider_id)
    reason = _check_span(start, end, reason)
    if booked_sessions is not None and booked_sessions not in TIME_OFF_CHOICES:
        raise ValidationFailed("booked_sessions must be 'cancel' or 'keep'", field="booked_sessions")
    sessions = _sessions_in(uow, provider_id, start, end)
    if sessions and booked_sessions is None:
        n = len(sessions)
        raise Conflict(
            f"this time off covers {n} booked session{'s' if n != 1 else ''}: choose to cancel "
            f"{'them' if n != 1 else 'it'} (the patients are notified) or to keep {'them' if n != 1 else 'it'}",
            field="booked_sessions",
            code=Code.TIME_OFF_OVERLAPS_SESSIONS,
            params={"sessions": n},
        )
    cancelled: list[str] = []
    if booked_sessions == "cancel":
        for session in sessions:
            if session.status == AppointmentStatus.BOOKED:
                booking.cancel_appointment(actor, uow, session.appointment_id, reason=TIME_OFF_CANCEL_REASON)
            else:
                _release_hold(actor, uow, session.appointment_id)
            cancelled.append(str(session.appointment_id))

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
            "sessions_cancelled": cancelled,
            "sessions_kept": [str(x.appointment_id) for x in sessions] if booked_sessions == "keep" else [],
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
