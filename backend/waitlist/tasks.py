"""Celery tasks of the waitlist: offer a freed slot, expire offers and entries, and a sweep that keeps the
cascade alive when an enqueue was lost. Tasks carry ids only; each opens its own unit of work as the system
actor of one tenant (cross-tenant discovery runs in an unscoped unit of work that only reads ids)."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, update
from sqlmodel import col, select

from backend import events
from backend.audit.service import record
from backend.celery_app import DB_RETRY_MAX, celery_app, database_unavailable, db_retry_delay
from backend.db import UnitOfWork
from backend.errors import DomainError
from backend.scheduling.models import ACTIVE_APPOINTMENT_STATUSES, Appointment, AppointmentStatus
from backend.tenancy.context import Actor
from backend.types import utcnow
from backend.waitlist import offers
from backend.waitlist.models import EntryStatus, OfferStatus, WaitlistEntry, WaitlistOffer
from backend.waitlist.policy import effective_policy

logger = logging.getLogger(__name__)

SWEEP_LOOKBACK = timedelta(hours=1)
MAX_BATCHES_PER_TICK = 10


@celery_app.task(name="waitlist.offer_freed_slot", bind=True, max_retries=DB_RETRY_MAX)
def offer_freed_slot_task(self: object, tenant_id: str, provider_id: str, start: str) -> str | None:
    """Offer one freed slot to the best eligible waiting entry of its tenant."""
    actor = Actor.system(uuid.UUID(tenant_id))
    try:
        with UnitOfWork(actor) as uow:
            offer = offers.offer_freed_slot(
                actor, uow, provider_id=uuid.UUID(provider_id), start=datetime.fromisoformat(start)
            )
            uow.commit()
    except DomainError as exc:
        logger.info("no offer for %s/%s at %s: %s", tenant_id, provider_id, start, exc.message)
        return None
    except Exception as exc:
        if not database_unavailable(exc):
            raise
        # The database is down or restarting: try again, later each time (the task is not lost). Run eagerly
        # (in-process, no broker) a retry cannot wait: a few at once, then the in-process sweep takes over.
        request = self.request  # type: ignore[attr-defined]
        logger.warning("database unavailable for the offer of a freed slot: retry %d", request.retries + 1)
        raise self.retry(  # type: ignore[attr-defined]
            exc=exc, countdown=db_retry_delay(request.retries), max_retries=3 if request.is_eager else DB_RETRY_MAX
        ) from exc
    return str(offer.id) if offer is not None else None


def _tenants_with(query: object) -> list[uuid.UUID]:
    with UnitOfWork(system=True) as uow:
        return sorted(set(uow.session.exec(query)))  # type: ignore[call-overload]


@celery_app.task(name="waitlist.expire_offers_tick")
def expire_offers_tick() -> int:
    """Every few seconds: expire every tenant's due offers (each offer exactly once, even if ticks overlap)."""
    now = utcnow()
    tenants = _tenants_with(
        select(WaitlistOffer.tenant_id)
        .where(WaitlistOffer.status == OfferStatus.PENDING, WaitlistOffer.expires_at <= now)
        .distinct()
    )
    total = 0
    for tenant_id in tenants:
        actor = Actor.system(tenant_id)
        for _ in range(MAX_BATCHES_PER_TICK):
            try:
                with UnitOfWork(actor) as uow:
                    expired = offers.expire_due_offers(actor, uow, now=now)
                    uow.commit()
            except Exception:
                logger.exception("expiring offers of tenant %s failed", tenant_id)
                break
            total += len(expired)
            if len(expired) < 100:
                break
    return total


@celery_app.task(name="waitlist.offer_open_slots_tick")
def offer_open_slots_tick() -> int:
    """Every 30 s: slots freed by a cancellation in the last hour that are still free and have no live offer
    are offered again (keeps the cascade alive when an enqueue was lost)."""
    now = utcnow()
    with UnitOfWork(system=True) as uow:
        cancelled = list(
            uow.session.exec(
                select(Appointment.tenant_id, Appointment.provider_id, Appointment.start_at, Appointment.end_at)
                .where(
                    col(Appointment.status).in_([AppointmentStatus.CANCELLED, AppointmentStatus.LATE_CANCELLED]),
                    col(Appointment.cancelled_at) >= now - SWEEP_LOOKBACK,
                    Appointment.start_at > now,
                )
                .distinct()
            )
        )
        todo: list[tuple[uuid.UUID, uuid.UUID, datetime]] = []
        for tenant_id, provider_id, start, end in cancelled:
            taken = uow.session.exec(
                select(Appointment.id).where(
                    Appointment.tenant_id == tenant_id,
                    Appointment.provider_id == provider_id,
                    Appointment.start_at < end,
                    Appointment.end_at > start,
                    col(Appointment.status).in_(ACTIVE_APPOINTMENT_STATUSES),
                    or_(
                        col(Appointment.status) == AppointmentStatus.BOOKED,
                        and_(col(Appointment.hold_expires_at).is_not(None), col(Appointment.hold_expires_at) > now),
                    ),
                )
            ).first()
            live = uow.session.exec(
                select(WaitlistOffer.id).where(
                    WaitlistOffer.tenant_id == tenant_id,
                    WaitlistOffer.provider_id == provider_id,
                    WaitlistOffer.slot_start == start,
                    WaitlistOffer.status == OfferStatus.PENDING,
                )
            ).first()
            if taken is None and live is None:
                todo.append((tenant_id, provider_id, start))
    made = 0
    for tenant_id, provider_id, start in todo:
        if offer_freed_slot_task(str(tenant_id), str(provider_id), start.isoformat()):
            made += 1
    return made


def expire_stale_entries(actor: Actor, uow: UnitOfWork, *, now: datetime | None = None) -> tuple[int, int]:
    """One tenant: waiting entries past their expiry -> expired; long-unconfirmed ones -> asked to reconfirm.
    Returns (expired, reconfirm requests)."""
    now = now or utcnow()
    expired_ids = list(
        uow.session.execute(
            update(WaitlistEntry)
            .where(
                col(WaitlistEntry.status) == EntryStatus.WAITING,
                col(WaitlistEntry.expires_at).is_not(None),
                col(WaitlistEntry.expires_at) <= now,
            )
            .values(status=EntryStatus.EXPIRED, version=col(WaitlistEntry.version) + 1, updated_at=now)
            .returning(col(WaitlistEntry.id))
            .execution_options(synchronize_session=False)
        ).scalars()
    )
    for entry_id in expired_ids:
        entry = uow.session.get(WaitlistEntry, entry_id)
        if entry is None:  # cannot happen: the row was just updated in this transaction
            continue
        uow.session.refresh(entry)
        record(actor, uow, action="waitlist.entry_expired", entity_type="waitlist_entry", entity_id=entry_id,
               data={"reason": "time to live passed"})  # fmt: skip
        offers._release_counters(uow, entry)
        events.emit(uow, "waitlist.entry_updated", entity_id=entry_id, status=str(EntryStatus.EXPIRED),
                    provider_id=entry.provider_id, clinic_id=entry.clinic_id, patient_id=entry.patient_id)  # fmt: skip
        # Its time to live passed (not an offer's outcome): the patient is told (backend.notifications.subscriber).
        events.emit(uow, "waitlist.entry_lapsed", entity_id=entry_id, provider_id=entry.provider_id,
                    clinic_id=entry.clinic_id, patient_id=entry.patient_id)  # fmt: skip
    asked = 0
    stale = list(
        uow.session.exec(
            select(WaitlistEntry).where(
                WaitlistEntry.status == EntryStatus.WAITING,
                col(WaitlistEntry.reconfirm_requested_at).is_(None),
            )
        )
    )
    intervals: dict[uuid.UUID, timedelta] = {}
    for entry in stale:
        if entry.clinic_id not in intervals:
            intervals[entry.clinic_id] = effective_policy(uow, entry.clinic_id).reconfirm_interval
        if entry.last_confirmed_at > now - intervals[entry.clinic_id]:
            continue
        moved = uow.session.execute(
            update(WaitlistEntry)
            .where(
                col(WaitlistEntry.id) == entry.id,
                col(WaitlistEntry.status) == EntryStatus.WAITING,
                col(WaitlistEntry.reconfirm_requested_at).is_(None),
            )
            .values(reconfirm_requested_at=now)
            .execution_options(synchronize_session=False)
        )
        if moved.rowcount != 1:  # type: ignore[attr-defined]
            continue
        asked += 1
        record(actor, uow, action="waitlist.reconfirm_requested", entity_type="waitlist_entry", entity_id=entry.id)
        events.emit(uow, "waitlist.reconfirm_requested", entity_id=entry.id, patient_id=entry.patient_id,
                    clinic_id=entry.clinic_id)  # fmt: skip
    return len(expired_ids), asked


@celery_app.task(name="waitlist.expire_entries_tick")
def expire_entries_tick() -> tuple[int, int]:
    """Every 10 minutes, per tenant: expire entries past their time to live, ask stale ones to reconfirm."""
    now = utcnow()
    tenants = _tenants_with(
        select(WaitlistEntry.tenant_id).where(WaitlistEntry.status == EntryStatus.WAITING).distinct()
    )
    expired = asked = 0
    for tenant_id in tenants:
        actor = Actor.system(tenant_id)
        try:
            with UnitOfWork(actor) as uow:
                e, a = expire_stale_entries(actor, uow, now=now)
                uow.commit()
        except Exception:
            logger.exception("expiring entries of tenant %s failed", tenant_id)
            continue
        expired, asked = expired + e, asked + a
    return expired, asked


@celery_app.task(name="waitlist.reconcile_counters_tick")
def reconcile_counters_tick() -> int:
    """Every 15 minutes: recount the Redis waitlist counters of each tenant from the database."""
    from backend.waitlist import counters

    tenants = _tenants_with(select(WaitlistEntry.tenant_id).distinct())
    for tenant_id in tenants:
        try:
            counters.reconcile(tenant_id)
        except Exception:
            logger.exception("reconciling waitlist counters of tenant %s failed", tenant_id)
    return len(tenants)
