"""Booking, holds, cancellation, rescheduling and attendance: one guarded path for every new appointment.

The guarded path, in order: a Redis mark (tells a second patient at once), a transaction-scoped advisory
lock per (tenant, provider) on PostgreSQL (racing bookings queue instead of deadlocking), release of
expired holds in the range, overlap checks with clear messages, the insert, and finally the database's
exclusion constraints, which have the last word. On SQLite the transaction itself is serialized.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from sqlalchemy import bindparam, func, or_, text, update
from sqlalchemy.exc import DBAPIError
from sqlmodel import col, select

from backend import events, jobs
from backend.audit.service import record
from backend.db import UnitOfWork
from backend.errors import Code, Conflict, NotFound, PermissionDenied, ValidationFailed
from backend.identity.models import Patient, Provider
from backend.scheduling import cache, slot_marks
from backend.scheduling.models import ACTIVE_APPOINTMENT_STATUSES, Appointment, AppointmentStatus, BookingPolicy
from backend.scheduling.policy import BookingRules, booking_rules, rules_at, visible_appointment
from backend.scheduling.service import time_off_intervals, weekly_rules
from backend.scheduling.slots import Interval, Slot, WeeklyRule, find_slot
from backend.service import require_role, service_function
from backend.tenancy.context import Actor, Role
from backend.tenancy.models import Clinic
from backend.types import utcnow

SLOT_TAKEN = "That time was just taken. Please choose another slot."
PATIENT_BUSY = "The patient already has an appointment at that time."
# PostgreSQL error codes a racing booking can meet; each means "someone else got there first".
PATIENT_OVERLAP = "ex_appointments_patient_overlap"  # alembic 0003
_RACE_SQLSTATES = {"23P01": SLOT_TAKEN, "40P01": SLOT_TAKEN, "40001": SLOT_TAKEN}


def constraint_name(exc: BaseException) -> str | None:
    """The constraint a database error names, if the driver reports one."""
    diag = getattr(getattr(exc, "orig", None), "diag", None)
    return getattr(diag, "constraint_name", None)


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a database error, if the driver reports one."""
    orig = getattr(exc, "orig", None)
    return getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)


@dataclass(frozen=True)
class BookingResult:
    appointment: Appointment
    replayed: bool = False  # True when an Idempotency-Key matched an earlier booking


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationFailed(f"{name} needs a time zone offset, e.g. 2026-03-02T15:00:00Z", field=name)
    return value


def _provider(uow: UnitOfWork, provider_id: uuid.UUID) -> Provider:
    provider = uow.session.get(Provider, provider_id)
    if provider is None or not provider.active:
        raise NotFound("provider")
    return provider


def _may_book_for(actor: Actor, patient_id: uuid.UUID | None) -> None:
    """A patient books for themself; an admin names the patient; nobody else books."""
    if actor.role == Role.PATIENT:
        if actor.patient_id is None or (patient_id is not None and patient_id != actor.patient_id):
            raise PermissionDenied("patients book for themselves only")
        return
    require_role(actor, Role.ADMIN)


def _patient_for(
    actor: Actor, uow: UnitOfWork, patient_id: uuid.UUID | None, *, found: bool | None = None
) -> uuid.UUID:
    """The patient a booking is for (see _may_book_for). `found`: whether the named patient exists in the practice,
    when the caller already read it (booking_context)."""
    _may_book_for(actor, patient_id)
    if actor.role == Role.PATIENT and actor.patient_id is not None:  # (_may_book_for refused one without)
        return actor.patient_id
    if patient_id is None:
        raise ValidationFailed("patient_id is required when staff book", field="patient_id")
    if found is None:
        found = uow.session.get(Patient, patient_id) is not None
    if not found:
        raise NotFound("patient")
    return patient_id


def _humanize(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes % (24 * 60) == 0 and minutes >= 24 * 60:
        days = minutes // (24 * 60)
        return f"{days} day{'s' if days != 1 else ''}"
    if minutes % 60 == 0 and minutes >= 60:
        hours = minutes // 60
        return f"{hours} hour{'s' if hours != 1 else ''}"
    return f"{minutes} minutes"


@dataclass(frozen=True)
class BookingContext:
    """What deciding a booking reads, loaded in one round trip on PostgreSQL (see `booking_context`)."""

    provider_active: bool
    patient_found: bool
    rules: list[WeeklyRule]
    time_off: list[Interval]  # around the start (a day either side)
    policies: dict[uuid.UUID | None, BookingRules]  # by clinic; None: the practice's default

    def booking_rules(self, clinic_id: uuid.UUID) -> BookingRules:
        """The rules that apply at the clinic (policy.rules_at)."""
        return rules_at(self.policies, clinic_id)


# One statement instead of five (provider, patient, rules, time off, policies): booking's hottest reads. Scoped to the
# practice explicitly (text() passes the ORM's tenant hook by; row-level security scopes it too).
_CONTEXT_SQL = text(
    """
    SELECT
      (SELECT p.active FROM providers p WHERE p.tenant_id = :tenant AND p.id = :provider) AS provider_active,
      (SELECT count(*) FROM patients x WHERE x.tenant_id = :tenant AND x.id = :patient) AS patient_found,
      (SELECT coalesce(json_agg(json_build_array(r.id, r.clinic_id, c.timezone, r.weekday, r.start_time, r.end_time,
                                                 r.session_minutes, r.buffer_minutes, r.modality, r.valid_from,
                                                 r.valid_until)), '[]')
         FROM availability_rules r JOIN clinics c ON c.tenant_id = r.tenant_id AND c.id = r.clinic_id
        WHERE r.tenant_id = :tenant AND r.provider_id = :provider AND c.archived_at IS NULL) AS rules,
      (SELECT coalesce(json_agg(json_build_array(t.start_at, t.end_at)), '[]')
         FROM time_off t
        WHERE t.tenant_id = :tenant AND t.provider_id = :provider AND t.start_at < :until AND t.end_at > :since
      ) AS time_off,
      (SELECT coalesce(json_agg(json_build_array(b.clinic_id, b.min_notice_minutes, b.horizon_days,
                                                 b.cancellation_window_hours, b.hold_minutes)), '[]')
         FROM booking_policies b WHERE b.tenant_id = :tenant) AS policies
    """
)


def _day(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


def booking_context(
    uow: UnitOfWork, provider_id: uuid.UUID, start: datetime, patient_id: uuid.UUID | None = None
) -> BookingContext:
    """The provider (active?), the patient (exists in the practice?), the provider's weekly rules at open clinics,
    its time off around `start`, and the practice's booking policies."""
    since, until = start - timedelta(days=1), start + timedelta(days=1)
    if uow.session.get_bind().dialect.name != "postgresql":
        provider = uow.session.get(Provider, provider_id)
        found = patient_id is not None and uow.session.get(Patient, patient_id) is not None
        policies = {p.clinic_id: BookingRules.of(p) for p in uow.session.exec(select(BookingPolicy))}
        return BookingContext(
            provider_active=provider is not None and provider.active,
            patient_found=found,
            rules=weekly_rules(uow, provider_id),
            time_off=time_off_intervals(uow, provider_id, since, until),
            policies=policies,
        )
    row = uow.session.execute(
        _CONTEXT_SQL,
        {"tenant": uow.tenant_id, "provider": provider_id, "patient": patient_id, "since": since, "until": until},
    ).one()
    rules = [
        WeeklyRule(
            rule_id=uuid.UUID(r[0]),
            clinic_id=uuid.UUID(r[1]),
            timezone=r[2],
            weekday=r[3],
            start=time.fromisoformat(r[4]),
            end=time.fromisoformat(r[5]),
            session_minutes=r[6],
            buffer_minutes=r[7],
            modality=r[8],
            valid_from=_day(r[9]),
            valid_until=_day(r[10]),
        )
        for r in row.rules
    ]
    time_off = [Interval(datetime.fromisoformat(a), datetime.fromisoformat(b)) for a, b in row.time_off]
    policies = {
        (uuid.UUID(c) if c else None): BookingRules(
            min_notice=timedelta(minutes=notice),
            horizon=timedelta(days=horizon),
            cancellation_window=timedelta(hours=window),
            hold=timedelta(minutes=hold),
        )
        for c, notice, horizon, window, hold in row.policies
    }
    return BookingContext(
        provider_active=bool(row.provider_active),
        patient_found=bool(row.patient_found),
        rules=rules,
        time_off=time_off,
        policies=policies,
    )


def bookable_slot(
    uow: UnitOfWork,
    provider: Provider | uuid.UUID,
    start: datetime,
    *,
    modality: str | None = None,
    now: datetime | None = None,
    context: BookingContext | None = None,
) -> tuple[Slot, BookingRules]:
    """Return the free-or-not slot of `provider` that starts at `start`, or say why there is none."""
    now = now or utcnow()
    start = _aware(start, "start")
    if start <= now:
        raise ValidationFailed("That time is in the past.", field="start")
    provider_id = provider if isinstance(provider, uuid.UUID) else provider.id
    context = context or booking_context(uow, provider_id, start)
    rules = context.rules
    if not rules:
        raise ValidationFailed("This provider has no bookable hours.", field="start")
    # Only time off matters here: whether the slot is taken is decided under the lock and by the constraints.
    slot = find_slot(rules, start, time_off=context.time_off, include_taken=True, now=now)
    if slot is None:
        raise ValidationFailed(
            "No session starts at that time (outside the provider's availability). Choose one of the free slots.",
            field="start",
        )
    booking = context.booking_rules(slot.clinic_id)
    if start < now + booking.min_notice:
        raise ValidationFailed(f"Bookings need at least {_humanize(booking.min_notice)} notice.", field="start")
    if start > now + booking.horizon:
        raise ValidationFailed(f"Bookings open {_humanize(booking.horizon)} ahead.", field="start")
    if modality is not None and modality != slot.modality:
        label = "in person" if slot.modality == "in_person" else "by telehealth"
        raise ValidationFailed(f"This session is offered {label} only.", field="modality")
    return slot, booking


def _lock_provider(uow: UnitOfWork, provider_id: uuid.UUID) -> None:
    if uow.session.get_bind().dialect.name == "postgresql":
        uow.session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
            {"key": f"{uow.tenant_id}:{provider_id}"},
        )


# PostgreSQL: the provider's advisory lock and the release of expired holds in one round trip, as plain SQL (the
# ORM's RETURNING machinery cost more than the statement). A CTE with a volatile function is never inlined, and the
# uncorrelated EXISTS over it becomes a one-time filter that PostgreSQL evaluates before it scans a single
# appointment (even when none matches); the lock is then held to the end of the transaction, so the insert that
# follows runs under it exactly as with two statements (tests/integration/test_booking.py checks it is held).
_LOCK_AND_RELEASE_SQL = text(
    """
    WITH provider_lock AS (SELECT pg_advisory_xact_lock(hashtextextended(:lock_key, 0)))
    UPDATE appointments
       SET status = :cancelled, cancel_reason = :reason, cancelled_at = :now, updated_at = :now
     WHERE EXISTS (SELECT 1 FROM provider_lock)
       AND tenant_id = :tenant AND status = :held AND hold_expires_at <= :now
       AND start_at < :end AND end_at > :start
       AND (provider_id = :provider OR patient_id = :patient)
    RETURNING id
    """
).bindparams(bindparam("reason", type_=Appointment.__table__.c.cancel_reason.type))  # type: ignore[attr-defined]


def _release_expired_holds(uow: UnitOfWork, appointment: Appointment, now: datetime) -> None:
    """Release the expired holds that overlap `appointment` (of its provider or patient); on PostgreSQL take the
    provider's advisory lock first, in the same statement."""
    start, end = appointment.start_at, appointment.end_at
    if uow.session.get_bind().dialect.name == "postgresql":
        released = list(
            uow.session.execute(
                _LOCK_AND_RELEASE_SQL,
                {
                    "lock_key": f"{uow.tenant_id}:{appointment.provider_id}",
                    "cancelled": AppointmentStatus.CANCELLED.value,
                    "reason": "hold expired",  # encrypted like every cancel reason (the column's type)
                    "held": AppointmentStatus.HELD.value,
                    "now": now,
                    "tenant": uow.tenant_id,
                    "start": start,
                    "end": end,
                    "provider": appointment.provider_id,
                    "patient": appointment.patient_id,
                },
            ).scalars()
        )
    else:
        whose = col(Appointment.provider_id) == appointment.provider_id
        if appointment.patient_id is not None:
            whose = or_(whose, col(Appointment.patient_id) == appointment.patient_id)
        released = list(
            uow.session.execute(
                update(Appointment)
                .where(
                    col(Appointment.status) == AppointmentStatus.HELD,
                    col(Appointment.hold_expires_at) <= now,
                    col(Appointment.start_at) < end,
                    col(Appointment.end_at) > start,
                    whose,
                )
                .values(
                    status=AppointmentStatus.CANCELLED, cancel_reason="hold expired", cancelled_at=now, updated_at=now
                )
                .returning(col(Appointment.id))
                .execution_options(synchronize_session=False)
            ).scalars()
        )
    # A state change like any other: audited in the transaction that makes it (invariant 4).
    for hold_id in released:
        if uow.actor is not None:
            record(uow.actor, uow, action="appointment.hold_expired", entity_type="appointment", entity_id=hold_id)


def _overlaps(uow: UnitOfWork, start: datetime, end: datetime, condition: object) -> bool:
    query = select(func.count()).select_from(Appointment).where(
        condition,  # type: ignore[arg-type]
        col(Appointment.status).in_(ACTIVE_APPOINTMENT_STATUSES),
        Appointment.start_at < end,
        Appointment.end_at > start,
    )
    return bool(uow.session.exec(query).one())


def guarded_insert(uow: UnitOfWork, appointment: Appointment) -> Appointment:
    """Insert an appointment or hold through the lock, the overlap checks and the constraints."""
    now = utcnow()
    start, end = appointment.start_at, appointment.end_at
    postgres = uow.session.get_bind().dialect.name == "postgresql"
    _release_expired_holds(uow, appointment, now)
    if not postgres:
        # PostgreSQL's exclusion constraints decide below; elsewhere the serialized transaction checks.
        if _overlaps(uow, start, end, Appointment.provider_id == appointment.provider_id):
            raise Conflict(SLOT_TAKEN, code=Code.SLOT_TAKEN)
        if appointment.patient_id is not None and _overlaps(
            uow, start, end, Appointment.patient_id == appointment.patient_id
        ):
            raise Conflict(PATIENT_BUSY)
    uow.session.add(appointment)
    try:
        uow.flush()
    except DBAPIError as exc:
        state = sqlstate(exc)
        if state == "23505":
            raise Conflict("This Idempotency-Key is already being used by another request.") from exc
        if state == "23P01" and constraint_name(exc) == PATIENT_OVERLAP:
            raise Conflict(PATIENT_BUSY) from exc
        if state in _RACE_SQLSTATES:
            raise Conflict(_RACE_SQLSTATES[state], code=Code.SLOT_TAKEN) from exc
        raise
    cache.invalidate_provider(uow, appointment.provider_id)
    return appointment


def _offer_freed_slot_after_commit(uow: UnitOfWork, provider_id: uuid.UUID, start: datetime) -> None:
    """Once the cancellation commits, offer the freed slot to the waitlist (a Celery task; inline when eager).
    The task checks the clinic's policy (auto_offer, cutoff); a lost enqueue is caught by the beat sweep."""
    if uow.tenant_id is not None:
        jobs.enqueue_after_commit(
            uow, "waitlist.offer_freed_slot", str(uow.tenant_id), str(provider_id), start.isoformat()
        )


def appointment_in_slot(
    actor: Actor, provider_id: uuid.UUID, patient_id: uuid.UUID | None, slot: Slot, **fields: object
) -> Appointment:
    """A new appointment or hold row covering `slot` exactly (not yet inserted: see guarded_insert)."""
    return Appointment(
        tenant_id=actor.tenant_id,
        provider_id=provider_id,
        patient_id=patient_id,
        clinic_id=slot.clinic_id,
        start_at=slot.start,
        end_at=slot.end,
        modality=slot.modality,
        booked_by_user_id=actor.user_id,
        **fields,  # type: ignore[arg-type]
    )


def _fingerprint(*parts: object) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()


@service_function
def book_appointment(
    actor: Actor,
    uow: UnitOfWork,
    *,
    provider_id: uuid.UUID,
    start: datetime,
    modality: str | None = None,
    patient_id: uuid.UUID | None = None,
    idempotency_key: str | None = None,
    series_id: uuid.UUID | None = None,
) -> BookingResult:
    """Book a free slot for a patient (the patient themself, or an admin naming the patient)."""
    _may_book_for(actor, patient_id)  # who may book is said before anything is read or the input checked
    start = _aware(start, "start")
    context = booking_context(uow, provider_id, start, patient_id if actor.role != Role.PATIENT else None)
    patient = _patient_for(actor, uow, patient_id, found=context.patient_found)
    if not context.provider_active:
        raise NotFound("provider")
    fingerprint = _fingerprint(provider_id, start.timestamp(), modality or "", patient)
    if idempotency_key is not None:
        idempotency_key = idempotency_key.strip()
        if not 1 <= len(idempotency_key) <= 100:
            raise ValidationFailed("Idempotency-Key must have 1 to 100 characters.", field="idempotency_key")
        earlier = uow.session.exec(select(Appointment).where(Appointment.idempotency_key == idempotency_key)).first()
        if earlier is not None:
            if earlier.idempotency_fingerprint != fingerprint:
                raise ValidationFailed(
                    "This Idempotency-Key was already used for a different booking.", field="idempotency_key"
                )
            return BookingResult(earlier, replayed=True)
    slot, _ = bookable_slot(uow, provider_id, start, modality=modality, context=context)
    slot_marks.take_mark(uow, provider_id, slot.start)
    appointment = guarded_insert(
        uow,
        appointment_in_slot(
            actor,
            provider_id,
            patient,
            slot,
            status=AppointmentStatus.BOOKED,
            idempotency_key=idempotency_key,
            idempotency_fingerprint=fingerprint if idempotency_key else None,
            series_id=series_id,
        ),
    )
    record(actor, uow, action="appointment.booked", entity_type="appointment", entity_id=appointment.id)
    events.emit(
        uow,
        "appointment.booked",
        entity_id=appointment.id,
        provider_id=provider_id,
        clinic_id=slot.clinic_id,
        patient_id=appointment.patient_id,
    )
    return BookingResult(appointment)


@service_function
def hold_slot(
    actor: Actor,
    uow: UnitOfWork,
    *,
    provider_id: uuid.UUID,
    start: datetime,
    modality: str | None = None,
    patient_id: uuid.UUID | None = None,
) -> Appointment:
    """Hold a free slot for a patient while they confirm; nobody else can book it until it expires."""
    patient = _patient_for(actor, uow, patient_id)
    provider = _provider(uow, provider_id)
    slot, booking = bookable_slot(uow, provider, start, modality=modality)
    slot_marks.take_mark(uow, provider.id, slot.start)
    hold = guarded_insert(
        uow,
        appointment_in_slot(
            actor, provider.id, patient, slot, status=AppointmentStatus.HELD, hold_expires_at=utcnow() + booking.hold
        ),
    )
    record(actor, uow, action="appointment.held", entity_type="appointment", entity_id=hold.id)
    events.emit(uow, "slot.held", entity_id=hold.id, provider_id=provider.id, patient_id=hold.patient_id)
    return hold


@service_function
def confirm_hold(actor: Actor, uow: UnitOfWork, hold_id: uuid.UUID, *, version: int) -> Appointment:
    """Turn a live hold into a booking. The id and version fence a late or repeated confirmation."""
    hold = visible_appointment(actor, uow, hold_id)
    if actor.role not in (Role.PATIENT, Role.ADMIN, Role.SYSTEM):
        raise PermissionDenied("your role may not confirm bookings")
    now = utcnow()
    result = uow.session.execute(
        update(Appointment)
        .where(
            col(Appointment.id) == hold_id,
            col(Appointment.version) == version,
            col(Appointment.status) == AppointmentStatus.HELD,
            col(Appointment.hold_expires_at) > now,
        )
        .values(status=AppointmentStatus.BOOKED, hold_expires_at=None, version=version + 1, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        uow.session.refresh(hold)
        if hold.status == AppointmentStatus.BOOKED:
            raise Conflict("This booking was already confirmed.")
        raise Conflict("Your hold on this time has expired. Please choose the slot again.", code=Code.HOLD_EXPIRED)
    uow.session.refresh(hold)
    record(actor, uow, action="appointment.booked", entity_type="appointment", entity_id=hold.id)
    events.emit(
        uow,
        "appointment.booked",
        entity_id=hold.id,
        provider_id=hold.provider_id,
        clinic_id=hold.clinic_id,
        patient_id=hold.patient_id,
    )
    cache.invalidate_provider(uow, hold.provider_id)
    return hold


@service_function
def release_hold(actor: Actor, uow: UnitOfWork, hold_id: uuid.UUID) -> None:
    """Give a held slot back (the patient changed their mind)."""
    hold = visible_appointment(actor, uow, hold_id, lock=True)
    if hold.status != AppointmentStatus.HELD:
        raise Conflict("There is no hold to release.")
    hold.status = AppointmentStatus.CANCELLED
    hold.cancel_reason = "hold released"
    hold.cancelled_at = utcnow()
    hold.version += 1
    uow.session.add(hold)
    record(actor, uow, action="appointment.hold_released", entity_type="appointment", entity_id=hold.id)
    events.emit(uow, "slot.freed", entity_id=hold.id, provider_id=hold.provider_id, patient_id=hold.patient_id)
    cache.invalidate_provider(uow, hold.provider_id)


@service_function
def cancel_appointment(actor: Actor, uow: UnitOfWork, appointment_id: uuid.UUID, *, reason: str = "") -> Appointment:
    """Cancel a future appointment; a patient's cancellation inside the window is recorded as late."""
    appointment = visible_appointment(actor, uow, appointment_id, lock=True)
    if appointment.status == AppointmentStatus.HELD:
        raise Conflict("This time is only held, not booked: release the hold instead.")
    if appointment.status != AppointmentStatus.BOOKED:
        raise Conflict(f"This appointment is already {appointment.status.replace('_', ' ')}.")
    now = utcnow()
    if appointment.start_at <= now:
        raise ValidationFailed("This appointment has already started and can no longer be cancelled.")
    window = booking_rules(uow, appointment.clinic_id).cancellation_window
    late = actor.role == Role.PATIENT and appointment.start_at - now < window
    appointment.status = AppointmentStatus.LATE_CANCELLED if late else AppointmentStatus.CANCELLED
    appointment.cancelled_at = now
    appointment.cancel_reason = reason.strip()[:500]
    appointment.version += 1
    appointment.updated_at = now
    uow.session.add(appointment)
    record(
        actor,
        uow,
        action="appointment.cancelled",
        entity_type="appointment",
        entity_id=appointment.id,
        data={"late": late, "by_role": str(actor.role)},
    )
    events.emit(
        uow,
        "appointment.cancelled",
        entity_id=appointment.id,
        provider_id=appointment.provider_id,
        clinic_id=appointment.clinic_id,
        patient_id=appointment.patient_id,
        start=appointment.start_at.isoformat(),
    )
    cache.invalidate_provider(uow, appointment.provider_id)
    _offer_freed_slot_after_commit(uow, appointment.provider_id, appointment.start_at)
    return appointment


MODALITY_WORDS = {"in_person": "in person", "telehealth": "by telehealth"}


@dataclass(frozen=True)
class VisitChange:
    """What a move changes besides the time: clinic (and with it, perhaps, the time zone) and modality."""

    from_clinic: str
    to_clinic: str
    from_timezone: str
    to_timezone: str
    from_modality: str
    to_modality: str
    clinic_changed: bool
    timezone_changed: bool
    modality_changed: bool

    @property
    def any_change(self) -> bool:
        return self.clinic_changed or self.modality_changed or self.timezone_changed

    def params(self) -> dict[str, object]:
        """Ids and names only (no patient data): what a page or client needs to word the change itself."""
        return {
            "clinic_changed": self.clinic_changed,
            "timezone_changed": self.timezone_changed,
            "modality_changed": self.modality_changed,
            "from_clinic": self.from_clinic,
            "to_clinic": self.to_clinic,
            "from_timezone": self.from_timezone,
            "to_timezone": self.to_timezone,
            "from_modality": self.from_modality,
            "to_modality": self.to_modality,
        }

    def sentence(self) -> str:
        """'This time is at Summit Online (America/Los_Angeles), by telehealth; your appointment is at ...'."""
        to_where = f"at {self.to_clinic} ({self.to_timezone})"
        from_where = f"at {self.from_clinic} ({self.from_timezone})"
        to_how = MODALITY_WORDS.get(self.to_modality, self.to_modality)
        from_how = MODALITY_WORDS.get(self.from_modality, self.from_modality)
        return (
            f"This time is {to_where}, {to_how}; your appointment is {from_where}, {from_how}. "
            "Confirm the change of clinic, time zone or visit type to move it there."
        )


def visit_change(uow: UnitOfWork, appointment: Appointment, slot: Slot) -> VisitChange:
    """How moving `appointment` into `slot` changes where and how the visit happens."""
    names = {
        c.id: c
        for c in uow.session.exec(
            select(Clinic).where(col(Clinic.id).in_({appointment.clinic_id, slot.clinic_id}))
        ).all()
    }
    old_clinic, new_clinic = names.get(appointment.clinic_id), names.get(slot.clinic_id)
    from_zone = old_clinic.timezone if old_clinic else ""
    return VisitChange(
        from_clinic=old_clinic.name if old_clinic else "",
        to_clinic=new_clinic.name if new_clinic else "",
        from_timezone=from_zone,
        to_timezone=slot.timezone,
        from_modality=appointment.modality,
        to_modality=slot.modality,
        clinic_changed=slot.clinic_id != appointment.clinic_id,
        timezone_changed=bool(from_zone) and from_zone != slot.timezone,
        modality_changed=slot.modality != appointment.modality,
    )


@service_function
def reschedule_appointment(
    actor: Actor, uow: UnitOfWork, appointment_id: uuid.UUID, *, new_start: datetime, confirm_change: bool = False
) -> Appointment:
    """Move an appointment to another free slot of the same provider, atomically: both or neither.

    A move that changes the clinic (and so perhaps the time zone) or the modality (in person <-> telehealth)
    is refused unless the request says the patient confirmed that change (`confirm_change`): a visit never
    moves to another city's clinic, or off-site, without anyone saying so."""
    old = visible_appointment(actor, uow, appointment_id, lock=True)
    if old.status != AppointmentStatus.BOOKED:
        raise Conflict(f"This appointment is {old.status.replace('_', ' ')} and cannot be moved.")
    now = utcnow()
    if old.start_at <= now:
        raise ValidationFailed("This appointment has already started and can no longer be moved.")
    if actor.role == Role.PATIENT:
        window = booking_rules(uow, old.clinic_id).cancellation_window
        if old.start_at - now < window:
            raise ValidationFailed(
                f"Appointments within {_humanize(window)} cannot be moved online. Please call the clinic."
            )
    provider = _provider(uow, old.provider_id)
    slot, _ = bookable_slot(uow, provider, new_start)
    if slot.start == old.start_at:
        raise ValidationFailed("The new time is the same as the current one.", field="new_start")
    change = visit_change(uow, old, slot)
    if change.any_change and not confirm_change:
        raise ValidationFailed(
            change.sentence(),
            field="confirm_change",
            code=Code.RESCHEDULE_CHANGE_UNCONFIRMED,
            params=change.params(),
        )
    slot_marks.take_mark(uow, provider.id, slot.start)
    _lock_provider(uow, provider.id)
    old.status = AppointmentStatus.CANCELLED
    old.cancelled_at = now
    old.cancel_reason = "rescheduled"
    old.version += 1
    old.updated_at = now
    uow.session.add(old)
    uow.flush()
    new = guarded_insert(
        uow,
        appointment_in_slot(
            actor, provider.id, old.patient_id, slot, status=AppointmentStatus.BOOKED, series_id=old.series_id
        ),
    )
    record(
        actor,
        uow,
        action="appointment.cancelled",
        entity_type="appointment",
        entity_id=old.id,
        data={"late": False, "by_role": str(actor.role), "rescheduled_to": str(new.id)},
    )
    moved: dict[str, object] = {"from_appointment": str(old.id)}
    if change.any_change:  # confirmed (or refused above): the audit says what changed besides the time
        moved |= {
            "from_clinic_id": str(old.clinic_id),
            "to_clinic_id": str(new.clinic_id),
            "from_modality": old.modality,
            "to_modality": new.modality,
            "change_confirmed": True,
        }
    record(
        actor,
        uow,
        action="appointment.rescheduled",
        entity_type="appointment",
        entity_id=new.id,
        data=moved,
    )
    events.emit(
        uow,
        "appointment.cancelled",
        entity_id=old.id,
        provider_id=old.provider_id,
        clinic_id=old.clinic_id,
        patient_id=old.patient_id,
        start=old.start_at.isoformat(),
        rescheduled_to=new.id,
    )
    events.emit(
        uow,
        "appointment.booked",
        entity_id=new.id,
        provider_id=new.provider_id,
        clinic_id=new.clinic_id,
        patient_id=new.patient_id,
        rescheduled_from=old.id,
    )
    # The move itself: the patient's one notice about it (not a cancellation plus a booking) names the new
    # appointment. Reminders follow the new row: it starts with none sent (backend.notifications.reminders).
    events.emit(
        uow,
        "appointment.rescheduled",
        entity_id=new.id,
        from_appointment_id=old.id,
        provider_id=new.provider_id,
        clinic_id=new.clinic_id,
        patient_id=new.patient_id,
    )
    _offer_freed_slot_after_commit(uow, old.provider_id, old.start_at)
    return new


ATTENDANCE = {"completed": AppointmentStatus.COMPLETED, "no_show": AppointmentStatus.NO_SHOW}


@service_function
def mark_attendance(actor: Actor, uow: UnitOfWork, appointment_id: uuid.UUID, *, outcome: str) -> Appointment:
    """Record that a started appointment took place or that the patient did not come (doctor, admin)."""
    require_role(actor, Role.DOCTOR, Role.ADMIN)
    if outcome not in ATTENDANCE:
        raise ValidationFailed("outcome must be 'completed' or 'no_show'", field="outcome")
    appointment = visible_appointment(actor, uow, appointment_id, lock=True)
    if appointment.status not in (AppointmentStatus.BOOKED, *ATTENDANCE.values()):
        raise Conflict(f"This appointment is {appointment.status.replace('_', ' ')}.")
    if appointment.start_at > utcnow():
        raise ValidationFailed("Attendance can be recorded once the appointment has started.")
    appointment.status = ATTENDANCE[outcome]
    appointment.version += 1
    appointment.updated_at = utcnow()
    uow.session.add(appointment)
    record(actor, uow, action=f"appointment.{outcome}", entity_type="appointment", entity_id=appointment.id)
    events.emit(
        uow,
        "appointment.updated",
        entity_id=appointment.id,
        provider_id=appointment.provider_id,
        patient_id=appointment.patient_id,
    )
    return appointment
