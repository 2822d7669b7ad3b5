"""Waitlist offers: an exclusive, time-limited hold on a free slot for one waitlisted patient.

Every offer is a pending WaitlistOffer plus a HELD appointment created through booking.guarded_insert (the one
guarded path), so invariant 1 holds for offers too; the partial unique index uq_waitlist_offers_live_slot keeps
one live offer per slot (invariant 3). Every transition is a conditional UPDATE (status = 'pending' ...), so a
racing accept, decline and expiry advance an offer exactly once, and each writes its audit rows in the same
transaction (invariant 4). When an offer closes without a booking the slot cascades to the next candidate,
enqueued after commit (backend.waitlist.tasks).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, update
from sqlalchemy.exc import DBAPIError
from sqlmodel import col, select

from backend import events, jobs
from backend.audit.service import record, record_access
from backend.db import UnitOfWork
from backend.errors import Code, Conflict, NotFound, PermissionDenied, ValidationFailed
from backend.identity.models import Provider, ProviderClinic
from backend.scheduling import cache, slot_marks
from backend.scheduling.booking import appointment_in_slot, guarded_insert, sqlstate
from backend.scheduling.models import Appointment, AppointmentStatus
from backend.scheduling.policy import booking_rules
from backend.scheduling.service import busy_intervals, weekly_rules
from backend.scheduling.slots import Slot, find_slot, generate_slots
from backend.service import require_role, service_function
from backend.tenancy.context import Actor, Role
from backend.tenancy.models import Clinic
from backend.types import utcnow
from backend.waitlist.entries import candidate_of, entry_visibility
from backend.waitlist.models import EntryStatus, OfferStatus, WaitlistEntry, WaitlistOffer
from backend.waitlist.policy import EffectivePolicy, effective_policy
from backend.waitlist.ranking import OpenSlot, Score, ineligibility, rank, score

logger = logging.getLogger(__name__)

OFFER_EXPIRED = "This offer has expired."
NO_MATCHING_SLOT = "No free slot matches this patient's preferences."
LIVE_OFFER = "This waitlist entry already has a live offer."
CONTINUITY_DAYS = 180
PROMOTE_SEARCH_DAYS = 30
_CLOSED_MESSAGES = {
    OfferStatus.EXPIRED: OFFER_EXPIRED,
    OfferStatus.DECLINED: "This offer was declined.",
    OfferStatus.WITHDRAWN: "This offer was withdrawn.",
    OfferStatus.ACCEPTED: "This offer was already accepted.",
}


# -- helpers ---------------------------------------------------------------------------------------------


def _release_counters(uow: UnitOfWork, entry: WaitlistEntry) -> None:
    """Give the entry's place back to the per-provider/clinic counters, when that module exists."""
    try:
        from backend.waitlist import counters  # type: ignore[attr-defined, unused-ignore]
    except ImportError:
        return
    release = getattr(counters, "release", None)
    if release is not None:
        release(uow, entry)


def _enqueue_cascade(uow: UnitOfWork, provider_id: uuid.UUID, start: datetime) -> None:
    """After commit, offer the slot to the next candidate (through Celery; inline when eager). A lost enqueue is
    caught by the beat sweep (waitlist.offer_open_slots_tick)."""
    if uow.tenant_id is not None:
        jobs.enqueue_after_commit(
            uow, "waitlist.offer_freed_slot", str(uow.tenant_id), str(provider_id), start.isoformat()
        )


def _clinic_zone(uow: UnitOfWork, clinic_id: uuid.UUID) -> str:
    clinic = uow.session.get(Clinic, clinic_id)
    return clinic.timezone if clinic is not None else "UTC"


def offer_expiry(policy: EffectivePolicy, now: datetime, zone: str, slot_start: datetime) -> datetime:
    """now + the offer hold; in quiet hours the clock starts when they end. Never after the slot starts."""
    return min(policy.quiet_hours_end_after(now, zone) + policy.offer_hold, slot_start)


def _continuity(
    uow: UnitOfWork, provider_id: uuid.UUID, patient_ids: Sequence[uuid.UUID], now: datetime
) -> set[uuid.UUID]:
    """Patients with a booked or completed appointment with the provider in the last 180 days."""
    if not patient_ids:
        return set()
    found = uow.session.exec(
        select(Appointment.patient_id).where(
            Appointment.provider_id == provider_id,
            col(Appointment.patient_id).in_(list(patient_ids)),
            col(Appointment.status).in_([AppointmentStatus.BOOKED, AppointmentStatus.COMPLETED]),
            Appointment.start_at >= now - timedelta(days=CONTINUITY_DAYS),
        )
    )
    return {p for p in found if p is not None}


def _busy_patients(
    uow: UnitOfWork, patient_ids: Sequence[uuid.UUID], start: datetime, end: datetime, now: datetime
) -> set[uuid.UUID]:
    """Patients among `patient_ids` who already have a booking or a live hold overlapping [start, end)."""
    if not patient_ids:
        return set()
    found = uow.session.exec(
        select(Appointment.patient_id).where(
            col(Appointment.patient_id).in_(list(patient_ids)),
            Appointment.start_at < end,
            Appointment.end_at > start,
            or_(
                col(Appointment.status) == AppointmentStatus.BOOKED,
                and_(col(Appointment.status) == AppointmentStatus.HELD, col(Appointment.hold_expires_at) > now),
            ),
        )
    )
    return {p for p in found if p is not None}


def _patients_with_live_offer(uow: UnitOfWork, patient_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """Patients among `patient_ids` with a pending offer on any of their entries: one slot at a time each."""
    if not patient_ids:
        return set()
    found = uow.session.exec(
        select(WaitlistEntry.patient_id)
        .join(WaitlistOffer, col(WaitlistOffer.entry_id) == WaitlistEntry.id)
        .where(col(WaitlistEntry.patient_id).in_(list(patient_ids)), WaitlistOffer.status == OfferStatus.PENDING)
    )
    return set(found)


def _slot_at(uow: UnitOfWork, provider: Provider, start: datetime, now: datetime) -> Slot | None:
    """The provider's slot starting at `start` with its status (free/held/booked), or None when there is none."""
    if start.tzinfo is None or start.utcoffset() is None:
        raise ValidationFailed("start needs a time zone offset, e.g. 2026-03-02T15:00:00Z", field="start")
    rules = weekly_rules(uow, provider.id)
    if not rules:
        return None
    time_off, booked, held = busy_intervals(uow, provider.id, start - timedelta(days=1), start + timedelta(days=1),
                                            now=now)  # fmt: skip
    return find_slot(rules, start, time_off=time_off, booked=booked, held=held, now=now, include_taken=True)


def _open_slot(slot: Slot, provider_id: uuid.UUID) -> OpenSlot:
    return OpenSlot(start=slot.start, end=slot.end, provider_id=provider_id, clinic_id=slot.clinic_id,
                    modality=slot.modality)  # fmt: skip


def _visible_entry(actor: Actor, uow: UnitOfWork, entry_id: uuid.UUID, *, lock: bool = False) -> WaitlistEntry:
    """An entry the staff actor may act on (a doctor: their own, or "any provider" at a clinic of theirs)."""
    query = select(WaitlistEntry).where(WaitlistEntry.id == entry_id)
    if lock:
        query = query.with_for_update()
    entry = uow.session.exec(query).first()
    if entry is None:
        raise NotFound("waitlist entry")
    if actor.role == Role.DOCTOR:
        if entry.provider_id is not None and entry.provider_id != actor.provider_id:
            raise NotFound("waitlist entry")
        if entry.provider_id is None:
            works_there = uow.session.exec(
                select(ProviderClinic.provider_id).where(
                    ProviderClinic.provider_id == actor.provider_id, ProviderClinic.clinic_id == entry.clinic_id
                )
            ).first()
            if works_there is None:
                raise NotFound("waitlist entry")
    elif actor.role == Role.PATIENT:
        if entry.patient_id != actor.patient_id:
            raise NotFound("waitlist entry")
    return entry


def _require_waiting(entry: WaitlistEntry) -> None:
    if entry.status == EntryStatus.OFFERED:
        raise Conflict(LIVE_OFFER)
    if entry.status != EntryStatus.WAITING:
        raise Conflict(f"This waitlist entry is {entry.status} and cannot be offered a slot.")


@dataclass(frozen=True)
class _Pick:
    entry: WaitlistEntry
    score: Score


def _make_offer(
    actor: Actor,
    uow: UnitOfWork,
    *,
    entry: WaitlistEntry,
    provider_id: uuid.UUID,
    slot: Slot,
    kind: str,
    total: float,
    reasons: Sequence[str],
    policy: EffectivePolicy,
    now: datetime,
) -> WaitlistOffer:
    """Hold the slot for the entry's patient and record the pending offer, all or nothing (a savepoint)."""
    expires_at = offer_expiry(policy, now, _clinic_zone(uow, slot.clinic_id), slot.start)
    if expires_at <= now:
        raise ValidationFailed("This slot starts too soon to be offered.", field="start")
    # The same Redis mark as a booking: a patient booking this very slot right now is told at once.
    slot_marks.take_mark(uow, provider_id, slot.start)
    try:
        with uow.session.begin_nested():
            moved = uow.session.execute(
                update(WaitlistEntry)
                .where(col(WaitlistEntry.id) == entry.id, col(WaitlistEntry.status) == EntryStatus.WAITING)
                .values(status=EntryStatus.OFFERED, version=col(WaitlistEntry.version) + 1, updated_at=now)
                .execution_options(synchronize_session=False)
            )
            if moved.rowcount != 1:  # type: ignore[attr-defined]
                raise Conflict("This waitlist entry is no longer waiting.")
            hold = guarded_insert(
                uow,
                appointment_in_slot(
                    actor, provider_id, entry.patient_id, slot, status=AppointmentStatus.HELD,
                    hold_expires_at=expires_at,
                ),
            )
            offer = WaitlistOffer(
                tenant_id=actor.tenant_id,
                entry_id=entry.id,
                appointment_id=hold.id,
                provider_id=provider_id,
                clinic_id=slot.clinic_id,
                slot_start=slot.start,
                slot_end=slot.end,
                kind=kind,
                offered_by_user_id=actor.user_id,
                score=total,
                reasons=list(reasons),
                expires_at=expires_at,
                created_at=now,
            )
            uow.session.add(offer)
            try:
                uow.flush()
            except DBAPIError as exc:
                if sqlstate(exc) == "23505":
                    raise Conflict("This slot already has a live offer.") from exc
                raise
    except DBAPIError as exc:
        if sqlstate(exc) in {"23P01", "40P01", "40001"}:
            raise Conflict("That time was just taken. Please choose another slot.", code=Code.SLOT_TAKEN) from exc
        raise
    uow.session.refresh(entry)
    data = {"kind": kind, "entry_id": str(entry.id), "appointment_id": str(hold.id), "score": total,
            "slot_start": slot.start.isoformat(), "expires_at": expires_at.isoformat()}  # fmt: skip
    record(actor, uow, action="appointment.held", entity_type="appointment", entity_id=hold.id,
           data={"offer_id": str(offer.id)})  # fmt: skip
    record(actor, uow, action="waitlist.offer_created", entity_type="waitlist_offer", entity_id=offer.id, data=data)
    record(actor, uow, action="waitlist.entry_offered", entity_type="waitlist_entry", entity_id=entry.id,
           data={"offer_id": str(offer.id)})  # fmt: skip
    events.emit(uow, "slot.held", entity_id=hold.id, provider_id=provider_id, patient_id=entry.patient_id)
    events.emit(
        uow,
        "waitlist.offer_created",
        entity_id=offer.id,
        entry_id=entry.id,
        patient_id=entry.patient_id,
        provider_id=provider_id,
        clinic_id=slot.clinic_id,
        appointment_id=hold.id,
        kind=kind,
        # An "any provider" entry is on the consoles of every provider at its clinic (portal.live_bridge).
        any_provider=entry.provider_id is None,
    )
    return offer


def _close_offer(
    actor: Actor,
    uow: UnitOfWork,
    offer: WaitlistOffer,
    outcome: OfferStatus,
    now: datetime,
    *,
    return_entry: bool = True,
    cascade: bool = True,
) -> None:
    """After an offer left 'pending' without a booking: cancel its hold, return the entry, audit, cascade."""
    if offer.appointment_id is not None:
        released = uow.session.execute(
            update(Appointment)
            .where(col(Appointment.id) == offer.appointment_id, col(Appointment.status) == AppointmentStatus.HELD)
            .values(
                status=AppointmentStatus.CANCELLED,
                cancel_reason=f"offer {outcome}",
                cancelled_at=now,
                hold_expires_at=None,
                version=col(Appointment.version) + 1,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        if released.rowcount == 1:  # type: ignore[attr-defined]
            record(
                actor,
                uow,
                action="appointment.hold_released",
                entity_type="appointment",
                entity_id=offer.appointment_id,
                data={"offer_id": str(offer.id), "reason": str(outcome)},
            )
        cache.invalidate_provider(uow, offer.provider_id)
    entry = uow.session.get(WaitlistEntry, offer.entry_id)
    record(actor, uow, action=f"waitlist.offer_{outcome}", entity_type="waitlist_offer", entity_id=offer.id,
           data={"entry_id": str(offer.entry_id)})  # fmt: skip
    if return_entry and entry is not None:
        policy = effective_policy(uow, offer.clinic_id)
        target = EntryStatus.EXPIRED if policy.expire_entry_on_decline else EntryStatus.WAITING
        moved = uow.session.execute(
            update(WaitlistEntry)
            .where(col(WaitlistEntry.id) == entry.id, col(WaitlistEntry.status) == EntryStatus.OFFERED)
            .values(status=target, version=col(WaitlistEntry.version) + 1, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        if moved.rowcount == 1:  # type: ignore[attr-defined]
            uow.session.refresh(entry)
            action = "waitlist.entry_expired" if target == EntryStatus.EXPIRED else "waitlist.entry_returned"
            record(actor, uow, action=action, entity_type="waitlist_entry", entity_id=entry.id,
                   data={"offer_id": str(offer.id), "offer_outcome": str(outcome)})  # fmt: skip
            if target == EntryStatus.EXPIRED:
                _release_counters(uow, entry)
            events.emit(uow, "waitlist.entry_updated", entity_id=entry.id, status=str(target),
                        provider_id=entry.provider_id, clinic_id=entry.clinic_id,
                        patient_id=entry.patient_id)  # fmt: skip
    # An expired offer's patient is told (backend.notifications.subscriber); the event names the offer's clinic.
    events.emit(
        uow,
        f"waitlist.offer_{outcome}",
        entity_id=offer.id,
        entry_id=offer.entry_id,
        patient_id=entry.patient_id if entry is not None else None,
        provider_id=offer.provider_id,
        clinic_id=offer.clinic_id,
        any_provider=entry is None or entry.provider_id is None,
    )
    events.emit(uow, "slot.freed", entity_id=offer.appointment_id, provider_id=offer.provider_id,
                patient_id=entry.patient_id if entry is not None else None)  # fmt: skip
    if cascade:
        _enqueue_cascade(uow, offer.provider_id, offer.slot_start)


def _owned_offer(actor: Actor, uow: UnitOfWork, offer_id: uuid.UUID) -> WaitlistOffer:
    """The offer, for its owner patient only: others' offers look missing, staff may not answer them."""
    offer = uow.session.get(WaitlistOffer, offer_id)
    if offer is None:
        raise NotFound("offer")
    if actor.role != Role.PATIENT:
        raise PermissionDenied("only the patient can answer an offer")
    entry = uow.session.get(WaitlistEntry, offer.entry_id)
    if entry is None or actor.patient_id is None or entry.patient_id != actor.patient_id:
        raise NotFound("offer")
    return offer


def _transition(uow: UnitOfWork, offer: WaitlistOffer, target: OfferStatus, now: datetime, *,
                unexpired: bool) -> bool:  # fmt: skip
    """pending -> target, only if still pending (and not yet expired when `unexpired`)."""
    conditions = [col(WaitlistOffer.id) == offer.id, col(WaitlistOffer.status) == OfferStatus.PENDING]
    if unexpired:
        conditions.append(col(WaitlistOffer.expires_at) > now)
    result = uow.session.execute(
        update(WaitlistOffer)
        .where(*conditions)
        .values(status=target, responded_at=now)
        .execution_options(synchronize_session=False)
    )
    done = result.rowcount == 1  # type: ignore[attr-defined]
    uow.session.refresh(offer)
    return done


def _refusal(offer: WaitlistOffer) -> Conflict:
    if offer.status == OfferStatus.PENDING:
        return Conflict(OFFER_EXPIRED, code=Code.OFFER_CLOSED)
    return Conflict(_CLOSED_MESSAGES.get(offer.status, OFFER_EXPIRED), code=Code.OFFER_CLOSED)


# -- service functions -----------------------------------------------------------------------------------


def _patients_who_gave_up(uow: UnitOfWork, provider_id: uuid.UUID, start: datetime) -> set[uuid.UUID]:
    """Patients never offered this slot: whoever cancelled (or moved) an appointment in it, and whoever already
    declined it or let an offer of it expire, from any of their entries."""
    cancelled = select(Appointment.patient_id).where(
        Appointment.provider_id == provider_id,
        Appointment.start_at == start,
        col(Appointment.status).in_([AppointmentStatus.CANCELLED, AppointmentStatus.LATE_CANCELLED]),
        col(Appointment.patient_id).is_not(None),
    )
    refused = (
        select(WaitlistEntry.patient_id)
        .join(WaitlistOffer, col(WaitlistOffer.entry_id) == WaitlistEntry.id)
        .where(
            WaitlistOffer.provider_id == provider_id,
            WaitlistOffer.slot_start == start,
            col(WaitlistOffer.status).in_([OfferStatus.DECLINED, OfferStatus.EXPIRED]),
        )
    )
    found = set(uow.session.exec(cancelled)) | set(uow.session.exec(refused))
    return {patient_id for patient_id in found if patient_id is not None}


@service_function
def offer_freed_slot(
    actor: Actor, uow: UnitOfWork, *, provider_id: uuid.UUID, start: datetime, kind: str = "auto"
) -> WaitlistOffer | None:
    """Offer a freed slot of a provider to the best eligible waiting entry (None when nobody fits)."""
    require_role(actor, Role.ADMIN)
    now = utcnow()
    provider = uow.session.get(Provider, provider_id)
    if provider is None:
        raise NotFound("provider")
    if not provider.active:
        return None
    slot = _slot_at(uow, provider, start, now)
    if slot is None or slot.status != "free" or slot.start <= now:
        return None
    if slot.start > now + booking_rules(uow, slot.clinic_id).horizon:
        return None
    policy = effective_policy(uow, slot.clinic_id)
    if kind == "auto" and not policy.auto_offer:
        return None
    if slot.start - now < policy.cutoff:
        return None

    excluded = _patients_who_gave_up(uow, provider.id, slot.start)
    entries = list(
        uow.session.exec(
            select(WaitlistEntry).where(
                WaitlistEntry.status == EntryStatus.WAITING,
                WaitlistEntry.clinic_id == slot.clinic_id,
                or_(col(WaitlistEntry.provider_id) == provider.id, col(WaitlistEntry.provider_id).is_(None)),
                or_(col(WaitlistEntry.expires_at).is_(None), col(WaitlistEntry.expires_at) > now),
            )
        )
    )
    specialties = {s.strip().lower() for s in provider.specialties or []}
    entries = [
        e
        for e in entries
        if e.patient_id not in excluded
        and (e.provider_id is not None or not e.specialty or e.specialty.strip().lower() in specialties)
    ]
    busy = _busy_patients(uow, [e.patient_id for e in entries], slot.start, slot.end, now)
    busy |= _patients_with_live_offer(uow, [e.patient_id for e in entries])
    entries = [e for e in entries if e.patient_id not in busy]
    if not entries:
        return None
    continuing = _continuity(uow, provider.id, [e.patient_id for e in entries], now)
    by_id = {e.id: e for e in entries}
    candidates = [candidate_of(e, provider.id if e.patient_id in continuing else None) for e in entries]
    ranked = rank(candidates, _open_slot(slot, provider.id), policy.weights, now)
    for candidate, scored in ranked[:3]:
        try:
            return _make_offer(
                actor, uow, entry=by_id[candidate.entry_id], provider_id=provider.id, slot=slot, kind=kind,
                total=scored.total, reasons=scored.reasons, policy=policy, now=now,
            )  # fmt: skip
        except Conflict as exc:
            logger.info("offer of %s to entry %s refused: %s", slot.start, candidate.entry_id, exc.message)
            continue
    return None


@service_function
def accept_offer(actor: Actor, uow: UnitOfWork, offer_id: uuid.UUID) -> Appointment:
    """The patient takes the offered slot: the hold becomes their booking, the entry is booked."""
    offer = _owned_offer(actor, uow, offer_id)
    now = utcnow()
    if not _transition(uow, offer, OfferStatus.ACCEPTED, now, unexpired=True):
        raise _refusal(offer)
    booked = uow.session.execute(
        update(Appointment)
        .where(col(Appointment.id) == offer.appointment_id, col(Appointment.status) == AppointmentStatus.HELD)
        .values(
            status=AppointmentStatus.BOOKED,
            hold_expires_at=None,
            version=col(Appointment.version) + 1,
            updated_at=now,
            booked_by_user_id=actor.user_id,
        )
        .execution_options(synchronize_session=False)
    )
    if booked.rowcount != 1:  # type: ignore[attr-defined]
        # The hold was released underneath (it ran out and another booking swept it): nothing is booked.
        raise Conflict(OFFER_EXPIRED, code=Code.OFFER_CLOSED)
    appointment = uow.session.get(Appointment, offer.appointment_id)
    entry = uow.session.get(WaitlistEntry, offer.entry_id)
    if appointment is None or entry is None:
        raise NotFound("offer")
    uow.session.refresh(appointment)
    uow.session.execute(
        update(WaitlistEntry)
        .where(col(WaitlistEntry.id) == entry.id)
        .values(status=EntryStatus.BOOKED, version=col(WaitlistEntry.version) + 1, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    uow.session.refresh(entry)
    _release_counters(uow, entry)
    record(actor, uow, action="waitlist.offer_accepted", entity_type="waitlist_offer", entity_id=offer.id,
           data={"appointment_id": str(appointment.id), "entry_id": str(entry.id)})  # fmt: skip
    record(actor, uow, action="appointment.booked", entity_type="appointment", entity_id=appointment.id,
           data={"offer_id": str(offer.id)})  # fmt: skip
    record(actor, uow, action="waitlist.entry_booked", entity_type="waitlist_entry", entity_id=entry.id,
           data={"appointment_id": str(appointment.id)})  # fmt: skip
    cache.invalidate_provider(uow, appointment.provider_id)
    events.emit(uow, "waitlist.offer_accepted", entity_id=offer.id, entry_id=entry.id, patient_id=entry.patient_id,
                provider_id=offer.provider_id)  # fmt: skip
    events.emit(uow, "waitlist.entry_updated", entity_id=entry.id, status=str(EntryStatus.BOOKED),
                provider_id=entry.provider_id, clinic_id=entry.clinic_id, patient_id=entry.patient_id)  # fmt: skip
    events.emit(uow, "appointment.booked", entity_id=appointment.id, provider_id=appointment.provider_id,
                clinic_id=appointment.clinic_id, patient_id=appointment.patient_id, offer_id=offer.id)  # fmt: skip
    return appointment


@service_function
def decline_offer(actor: Actor, uow: UnitOfWork, offer_id: uuid.UUID) -> WaitlistOffer:
    """The patient turns the offer down: the hold is released and the slot goes to the next candidate."""
    offer = _owned_offer(actor, uow, offer_id)
    now = utcnow()
    if not _transition(uow, offer, OfferStatus.DECLINED, now, unexpired=False):
        raise _refusal(offer)
    _close_offer(actor, uow, offer, OfferStatus.DECLINED, now)
    return offer


@service_function
def expire_due_offers(
    actor: Actor, uow: UnitOfWork, *, now: datetime | None = None, limit: int = 100
) -> list[uuid.UUID]:
    """Expire the tenant's pending offers whose time is up (each exactly once, even under racing sweeps)."""
    require_role(actor, Role.ADMIN)
    now = now or utcnow()
    due = (
        select(WaitlistOffer.id)
        .where(
            WaitlistOffer.tenant_id == actor.tenant_id,
            WaitlistOffer.status == OfferStatus.PENDING,
            WaitlistOffer.expires_at <= now,
        )
        .order_by(col(WaitlistOffer.expires_at))
        .limit(max(1, min(limit, 1000)))
        .with_for_update(skip_locked=True)
    )
    expired_ids = list(
        uow.session.execute(
            update(WaitlistOffer)
            .where(
                col(WaitlistOffer.id).in_(due.scalar_subquery()),
                col(WaitlistOffer.status) == OfferStatus.PENDING,
                col(WaitlistOffer.expires_at) <= now,
            )
            .values(status=OfferStatus.EXPIRED, responded_at=now)
            .returning(col(WaitlistOffer.id))
            .execution_options(synchronize_session=False)
        ).scalars()
    )
    for offer_id in expired_ids:
        offer = uow.session.get(WaitlistOffer, offer_id)
        if offer is None:  # cannot happen: the row was just updated in this transaction
            continue
        uow.session.refresh(offer)
        _close_offer(actor, uow, offer, OfferStatus.EXPIRED, now)
    return expired_ids


def withdraw_live_offer(actor: Actor, uow: UnitOfWork, entry: WaitlistEntry) -> None:
    """The entry leaves (patient or staff): its pending offer is withdrawn, the hold released, the slot cascades.

    The caller changes the entry's own status (cancelled / removed) in the same unit of work."""
    now = utcnow()
    live = list(
        uow.session.exec(
            select(WaitlistOffer).where(
                WaitlistOffer.entry_id == entry.id, WaitlistOffer.status == OfferStatus.PENDING
            )
        )
    )
    for offer in live:
        if _transition(uow, offer, OfferStatus.WITHDRAWN, now, unexpired=False):
            _close_offer(actor, uow, offer, OfferStatus.WITHDRAWN, now, return_entry=False)


@service_function
def promote_entry(actor: Actor, uow: UnitOfWork, entry_id: uuid.UUID) -> WaitlistOffer:
    """Offer this entry its best eligible free slot now (doctor: own entries and own time; admin: any)."""
    require_role(actor, Role.DOCTOR, Role.ADMIN)
    entry = _visible_entry(actor, uow, entry_id, lock=True)
    _require_waiting(entry)
    now = utcnow()
    policy = effective_policy(uow, entry.clinic_id)
    if entry.provider_id is not None:
        provider_ids = [entry.provider_id]
    elif actor.role == Role.DOCTOR and actor.provider_id is not None:
        provider_ids = [actor.provider_id]
    else:
        provider_ids = list(
            uow.session.exec(select(ProviderClinic.provider_id).where(ProviderClinic.clinic_id == entry.clinic_id))
        )
    horizon = booking_rules(uow, entry.clinic_id).horizon
    window_end = now + min(timedelta(days=PROMOTE_SEARCH_DAYS), horizon)
    options: list[tuple[float, datetime, Provider, Slot, Score]] = []
    for pid in provider_ids:
        provider = uow.session.get(Provider, pid)
        if provider is None or not provider.active:
            continue
        if entry.provider_id is None and entry.specialty and entry.specialty.strip().lower() not in {
            s.strip().lower() for s in provider.specialties or []
        }:
            continue
        rules = [r for r in weekly_rules(uow, pid) if r.clinic_id == entry.clinic_id]
        if not rules:
            continue
        time_off, booked, held = busy_intervals(uow, pid, now, window_end + timedelta(days=1), now=now)
        slots = generate_slots(rules, window_start=now, window_end=window_end, time_off=time_off, booked=booked,
                               held=held, now=now, min_notice=policy.cutoff)  # fmt: skip
        continuing = pid in _continuity(uow, pid, [entry.patient_id], now)
        candidate = candidate_of(entry, pid if continuing else None)
        for slot in slots:
            open_slot = _open_slot(slot, pid)
            if ineligibility(candidate, open_slot):
                continue
            scored = score(candidate, open_slot, policy.weights, now)
            options.append((scored.total, slot.start, provider, slot, scored))
    options.sort(key=lambda o: (-o[0], o[1]))
    busy_checked = 0
    for _total, _start, provider, slot, scored in options:
        if entry.patient_id in _busy_patients(uow, [entry.patient_id], slot.start, slot.end, now):
            continue
        busy_checked += 1
        try:
            return _make_offer(
                actor, uow, entry=entry, provider_id=provider.id, slot=slot, kind="promote", total=scored.total,
                reasons=[*scored.reasons, "Promoted by staff"], policy=policy, now=now,
            )  # fmt: skip
        except Conflict:
            if busy_checked >= 3:
                raise
            continue
    raise ValidationFailed(NO_MATCHING_SLOT)


@service_function
def invite_entry(
    actor: Actor,
    uow: UnitOfWork,
    entry_id: uuid.UUID,
    *,
    start: datetime,
    provider_id: uuid.UUID | None = None,
) -> WaitlistOffer:
    """Offer this entry a chosen free slot (its preferences need not match)."""
    require_role(actor, Role.DOCTOR, Role.ADMIN)
    entry = _visible_entry(actor, uow, entry_id, lock=True)
    provider_id = provider_id or entry.provider_id or (actor.provider_id if actor.role == Role.DOCTOR else None)
    if provider_id is None:
        raise ValidationFailed("Choose the provider whose slot to offer.", field="provider_id")
    provider = uow.session.get(Provider, provider_id)
    if provider is None or not provider.active:
        raise NotFound("provider")
    if actor.role == Role.DOCTOR and provider.id != actor.provider_id:
        raise PermissionDenied("doctors can offer their own time only")
    _require_waiting(entry)
    now = utcnow()
    if start.tzinfo is None or start.utcoffset() is None:
        raise ValidationFailed("start needs a time zone offset, e.g. 2026-03-02T15:00:00Z", field="start")
    if start <= now:
        raise ValidationFailed("That time is in the past.", field="start")
    slot = _slot_at(uow, provider, start, now)
    if slot is None:
        raise ValidationFailed("No session starts at that time (outside the provider's availability).",
                               field="start")  # fmt: skip
    if slot.status != "free":
        raise Conflict("That time is not free.")
    policy = effective_policy(uow, slot.clinic_id)
    continuing = provider.id in _continuity(uow, provider.id, [entry.patient_id], now)
    scored = score(candidate_of(entry, provider.id if continuing else None), _open_slot(slot, provider.id),
                   policy.weights, now)  # fmt: skip
    reasons = [*scored.reasons]
    if not scored.eligible:
        reasons.append(f"Invited although {scored.ineligible_reason}")
    reasons.append("Invited by staff")
    return _make_offer(actor, uow, entry=entry, provider_id=provider.id, slot=slot, kind="invite",
                       total=scored.total, reasons=reasons, policy=policy, now=now)  # fmt: skip


@service_function
def patient_busy_times(
    actor: Actor, uow: UnitOfWork, entry_id: uuid.UUID, *, start: datetime, end: datetime
) -> list[tuple[datetime, datetime]]:
    """When the entry's patient is already taken between start and end: their booked appointments and live
    holds with any provider, as (start, end) only. An invite overlapping one of them is refused
    ("The patient already has an appointment at that time."), so the Invite dialog leaves those times out."""
    require_role(actor, Role.DOCTOR, Role.ADMIN)
    entry = _visible_entry(actor, uow, entry_id)
    now = utcnow()
    rows = uow.session.exec(
        select(Appointment).where(
            Appointment.patient_id == entry.patient_id,
            col(Appointment.status).in_((AppointmentStatus.BOOKED, AppointmentStatus.HELD)),
            Appointment.start_at < end,
            Appointment.end_at > start,
        )
    ).all()
    record_access(actor, uow, action="waitlist.patient_busy_times", patient_ids=[entry.patient_id])
    return sorted(
        (a.start_at, a.end_at)
        for a in rows
        # Exactly what the booking guard would refuse: it releases only holds whose time is up.
        if a.status == AppointmentStatus.BOOKED or a.hold_expires_at is None or a.hold_expires_at > now
    )


@service_function
def list_offers(actor: Actor, uow: UnitOfWork, *, entry_id: uuid.UUID | None = None) -> list[WaitlistOffer]:
    """A patient's own offers (history), a doctor's on the entries they may see, or the practice's for admins."""
    # Exactly the entries' scope: a doctor sees offers on the entries they may see, never a colleague's.
    query = (
        select(WaitlistOffer)
        .join(WaitlistEntry, col(WaitlistEntry.id) == WaitlistOffer.entry_id)
        .where(entry_visibility(actor))
    )
    if entry_id is not None:
        query = query.where(WaitlistOffer.entry_id == entry_id)
    query = query.order_by(col(WaitlistOffer.created_at).desc()).limit(500)
    offers = list(uow.session.exec(query))
    if offers:
        patients = uow.session.exec(
            select(WaitlistEntry.patient_id).where(col(WaitlistEntry.id).in_({o.entry_id for o in offers}))
        )
        record_access(actor, uow, action="offers.list", patient_ids=list(patients))
    return offers


__all__ = [
    "accept_offer",
    "decline_offer",
    "expire_due_offers",
    "invite_entry",
    "list_offers",
    "offer_expiry",
    "offer_freed_slot",
    "patient_busy_times",
    "promote_entry",
    "withdraw_live_offer",
]
