"""Waitlist entries and policy: join, leave, confirm interest, list and rank in each role's own scope.

Visibility: a patient sees their own entries; a doctor the entries for them and the "any provider"
entries at clinics where they work; admins (and the system) every entry of the practice. Anything else,
including another practice's entry, is NotFound.

Queue and position: an entry waits in the queue of its clinic and provider (the clinic's "any provider"
queue when it names none). `position` is its 1-based place among the active entries of that queue,
ranked by `ranking.rank` with no slot and the clinic's effective weights.

Estimated wait (`estimated_wait_days`): `estimate.estimate_wait_days` over the queue's fills of the last
60 days (entries booked from the waitlist and how long each had waited), the patient's position and how
long they have already waited. None ("hard to estimate yet") when those fills say too little.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from importlib.util import find_spec
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Bundle
from sqlmodel import col, func, select

from backend import events
from backend.audit.service import record, record_access
from backend.db import UnitOfWork
from backend.errors import Code, Conflict, NotFound, PermissionDenied, ValidationFailed
from backend.identity.models import MODALITIES, Patient, Provider, ProviderClinic
from backend.scheduling.models import Appointment, AppointmentStatus
from backend.service import require_role, service_function
from backend.tenancy.context import Actor, Role
from backend.tenancy.models import Clinic
from backend.types import utcnow
from backend.waitlist import counters
from backend.waitlist.entries import candidate_of, entry_visibility
from backend.waitlist.estimate import estimate_wait_days
from backend.waitlist.models import (
    ACTIVE_ENTRY_STATUSES,
    EntryStatus,
    OfferStatus,
    WaitlistEntry,
    WaitlistOffer,
    WaitlistPolicy,
    target_key,
)
from backend.waitlist.policy import POLICY_BOUNDS, effective_policy
from backend.waitlist.ranking import Candidate, Score, Weights, Window, position_band, rank, score

MAX_WINDOWS = 14
MAX_REASON = 500
WAIT_ESTIMATE_LOOKBACK = timedelta(days=60)
DUPLICATE = "You are already on this waitlist"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class JoinRequest:
    clinic_id: uuid.UUID
    provider_id: uuid.UUID | None = None
    specialty: str | None = None
    modality: str | None = None  # in_person | telehealth | None (either)
    # [{"weekday": 0-6, "start": "HH:MM", "end": "HH:MM"}] local to the clinic
    windows: list[dict[str, Any]] = field(default_factory=list)
    earliest_date: date | None = None
    latest_date: date | None = None
    urgency: int = 2  # 1 routine .. 4 urgent
    reason: str = ""  # short, <= 500; never logged, never in audit data
    patient_id: uuid.UUID | None = None  # staff join on a patient's behalf


@dataclass(frozen=True)
class EntryView:
    id: uuid.UUID
    status: str
    urgency: int
    created_at: datetime
    patient_id: uuid.UUID
    patient_name: str
    provider_id: uuid.UUID | None
    provider_name: str
    clinic_id: uuid.UUID
    clinic_name: str
    timezone: str
    preferred_windows: list[dict[str, Any]]
    reason: str | None = None  # staff and the owner only
    specialty: str | None = None
    modality: str | None = None
    earliest_date: date | None = None
    latest_date: date | None = None
    expires_at: datetime | None = None
    last_confirmed_at: datetime | None = None
    score: float = 0.0
    reasons: list[str] = field(default_factory=list)
    position: int | None = None
    position_band: str = ""
    estimated_wait_days: int | None = None
    live_offer: dict[str, Any] | None = None


@dataclass(frozen=True)
class PolicyView:
    """The waitlist policy in force for the practice (clinic_id None) or one clinic, and its source."""

    clinic_id: uuid.UUID | None
    source: str  # "clinic", "practice" or "default"
    max_active_per_provider: int
    max_active_per_clinic: int
    max_entries_per_patient: int
    entry_ttl_days: int
    reconfirm_interval_days: int
    offer_hold_minutes: int
    offers_per_batch: int
    cutoff_minutes_before_slot: int
    quiet_hours_start: str | None  # "HH:MM" in the clinic's zone
    quiet_hours_end: str | None
    urgency_weight: float
    wait_weight: float
    fit_weight: float
    continuity_weight: float
    auto_offer: bool
    expire_entry_on_decline: bool
    updated_at: datetime | None


# -- visibility ----------------------------------------------------------------------------------------


def _works_at(uow: UnitOfWork, provider_id: uuid.UUID | None) -> set[uuid.UUID]:
    if provider_id is None:
        return set()
    return set(uow.session.exec(select(ProviderClinic.clinic_id).where(ProviderClinic.provider_id == provider_id)))


def can_see_entry(actor: Actor, uow: UnitOfWork, entry: WaitlistEntry) -> bool:
    """A patient sees their own; a doctor theirs and "any provider" ones where they work; staff all."""
    if actor.role == Role.PATIENT:
        return actor.patient_id is not None and entry.patient_id == actor.patient_id
    if actor.role == Role.DOCTOR:
        if actor.provider_id is not None and entry.provider_id == actor.provider_id:
            return True
        return entry.provider_id is None and entry.clinic_id in _works_at(uow, actor.provider_id)
    return actor.role in (Role.ADMIN, Role.SYSTEM)


def visible_entry(actor: Actor, uow: UnitOfWork, entry_id: uuid.UUID, *, lock: bool = False) -> WaitlistEntry:
    """Load an entry the actor may see, or NotFound (the same for another practice's or patient's)."""
    query = select(WaitlistEntry).where(WaitlistEntry.id == entry_id)
    if lock:
        query = query.with_for_update()
    entry = uow.session.exec(query).first()
    if entry is None or not can_see_entry(actor, uow, entry):
        raise NotFound("waitlist entry")
    return entry


# What a view shows of an entry's patient, clinic and provider: these columns, not whole ORM objects (loading four
# objects per row was most of a console re-read's CPU). `provider` is all None for an "any provider" entry.
_PATIENT: Bundle[Any] = Bundle("patient", col(Patient.id), col(Patient.full_name))
_CLINIC: Bundle[Any] = Bundle("clinic", col(Clinic.id), col(Clinic.name))
_PROVIDER: Bundle[Any] = Bundle("provider", col(Provider.id), col(Provider.full_name))


def _view_query() -> Any:
    return select(WaitlistEntry, _PATIENT, _CLINIC, _PROVIDER)


def _scoped_query(actor: Actor) -> Any:
    return (
        _view_query()
        .join(Patient, col(Patient.id) == WaitlistEntry.patient_id)
        .join(Clinic, col(Clinic.id) == WaitlistEntry.clinic_id)
        .outerjoin(Provider, col(Provider.id) == WaitlistEntry.provider_id)
        .where(entry_visibility(actor))
    )


# -- views: score, position, estimate, live offer ---------------------------------------------------------


Queue = tuple[uuid.UUID, uuid.UUID | None]


def _queue(entry: Any) -> Queue:
    return (entry.clinic_id, entry.provider_id)


# What `candidate_of` and `_queue` read of an entry (its reason, the one encrypted column, is never among them).
_RANKED_COLUMNS = tuple(
    col(getattr(WaitlistEntry, name))
    for name in ("id", "patient_id", "urgency", "created_at", "timezone", "preferred_windows", "provider_id",
                 "clinic_id", "modality", "earliest_date", "latest_date")
)  # fmt: skip


class _Ranker:
    """Scores and queue positions for a set of entries, computed with as few queries as possible."""

    def __init__(self, uow: UnitOfWork, now: datetime) -> None:
        self.uow, self.now = uow, now
        self._weights: dict[uuid.UUID, Weights] = {}
        self._ranked: dict[uuid.UUID, tuple[int, Score]] = {}
        self._fills: dict[Queue, list[float]] = {}

    def weights(self, clinic_id: uuid.UUID) -> Weights:
        if clinic_id not in self._weights:
            self._weights[clinic_id] = effective_policy(self.uow, clinic_id).weights
        return self._weights[clinic_id]

    def prepare(self, entries: Iterable[WaitlistEntry]) -> None:
        given = {e.id: e for e in entries if e.status in ACTIVE_ENTRY_STATUSES}
        queues = {_queue(e) for e in given.values()}
        if not queues:
            return
        clinics = {c for c, _ in queues}
        # The rest of their queues, without what is already loaded (a console's rows are usually whole queues) and
        # without the reason (ranking never reads it; decrypting it per row was a third of a console's re-read).
        # Only the columns ranking reads, as plain rows: no ORM object per entry of the queue.
        others = self.uow.session.exec(
            select(*_RANKED_COLUMNS).where(
                col(WaitlistEntry.clinic_id).in_(clinics),
                col(WaitlistEntry.status).in_(ACTIVE_ENTRY_STATUSES),
                col(WaitlistEntry.id).not_in(list(given)),
            )
        ).all()
        grouped: dict[Queue, list[Candidate]] = defaultdict(list)
        for entry in [*given.values(), *others]:
            if _queue(entry) in queues:
                grouped[_queue(entry)].append(candidate_of(entry))
        for (clinic_id, _), candidates in grouped.items():
            for position, (candidate, scored) in enumerate(
                rank(candidates, None, self.weights(clinic_id), self.now), start=1
            ):
                self._ranked[candidate.entry_id] = (position, scored)

    def score(self, entry: WaitlistEntry) -> tuple[int | None, Score]:
        if entry.id in self._ranked:
            return self._ranked[entry.id]
        return None, score(candidate_of(entry), None, self.weights(entry.clinic_id), self.now)

    def fill_waits_days(self, queue: Queue) -> list[float]:
        """For each entry of the queue booked from the waitlist lately, the days it had waited then."""
        if queue not in self._fills:
            clinic_id, provider_id = queue
            rows = self.uow.session.exec(
                select(WaitlistEntry.created_at, WaitlistOffer.responded_at)
                .join(WaitlistOffer, col(WaitlistOffer.entry_id) == WaitlistEntry.id)
                .where(
                    WaitlistEntry.clinic_id == clinic_id,
                    col(WaitlistEntry.provider_id) == provider_id
                    if provider_id is not None
                    else col(WaitlistEntry.provider_id).is_(None),
                    WaitlistOffer.status == OfferStatus.ACCEPTED,
                    col(WaitlistOffer.responded_at) >= self.now - WAIT_ESTIMATE_LOOKBACK,
                )
            ).all()
            self._fills[queue] = [
                max(0.0, (booked - joined) / timedelta(days=1)) for joined, booked in rows if booked is not None
            ]
        return self._fills[queue]


def _live_offers(uow: UnitOfWork, entry_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
    if not entry_ids:
        return {}
    offers = uow.session.exec(
        select(WaitlistOffer, Appointment.modality)
        .outerjoin(Appointment, col(Appointment.id) == WaitlistOffer.appointment_id)
        .where(col(WaitlistOffer.entry_id).in_(entry_ids), WaitlistOffer.status == OfferStatus.PENDING)
    ).all()
    return {
        o.entry_id: {
            "offer_id": o.id,
            "slot_start": o.slot_start,
            "slot_end": o.slot_end,
            "expires_at": o.expires_at,
            "status": str(o.status),
            "modality": modality or "",  # of the held slot: in_person or telehealth
        }
        for o, modality in offers
    }


def _build_views(
    actor: Actor, uow: UnitOfWork, rows: Sequence[tuple[WaitlistEntry, Any, Any, Any]]
) -> list[EntryView]:
    """Views of (entry, patient, clinic, provider) rows of `_view_query` (the last three: bundles of columns)."""
    now = utcnow()
    ranker = _Ranker(uow, now)
    ranker.prepare(entry for entry, *_ in rows)
    offers = _live_offers(uow, [entry.id for entry, *_ in rows])
    views = []
    for entry, patient, clinic, provider in rows:
        position, scored = ranker.score(entry)
        estimate = None
        if position is not None:
            estimate = estimate_wait_days(
                position=position,
                waited_days=(now - entry.created_at) / timedelta(days=1),
                fill_waits_days=ranker.fill_waits_days(_queue(entry)),
                lookback_days=WAIT_ESTIMATE_LOOKBACK / timedelta(days=1),
            )
        sees_reason = actor.is_staff or (actor.patient_id is not None and actor.patient_id == entry.patient_id)
        views.append(
            EntryView(
                id=entry.id,
                status=str(entry.status),
                urgency=entry.urgency,
                created_at=entry.created_at,
                patient_id=patient.id,
                patient_name=patient.full_name,
                provider_id=provider.id,
                provider_name=provider.full_name if provider.id is not None else "Any provider",
                clinic_id=clinic.id,
                clinic_name=clinic.name,
                timezone=entry.timezone,
                preferred_windows=list(entry.preferred_windows),
                reason=entry.reason if sees_reason else None,
                specialty=entry.specialty,
                modality=entry.modality,
                earliest_date=entry.earliest_date,
                latest_date=entry.latest_date,
                expires_at=entry.expires_at,
                last_confirmed_at=entry.last_confirmed_at,
                score=scored.total,
                reasons=list(scored.reasons),
                position=position,
                position_band=position_band(position) if position is not None else "",
                estimated_wait_days=estimate,
                live_offer=offers.get(entry.id),
            )
        )
    return views


def entry_view(actor: Actor, uow: UnitOfWork, entry: WaitlistEntry) -> EntryView:
    """The view of one entry the actor has just acted on (no visibility check: the caller made one)."""
    row = uow.session.exec(
        _view_query()
        .join(Patient, col(Patient.id) == WaitlistEntry.patient_id)
        .join(Clinic, col(Clinic.id) == WaitlistEntry.clinic_id)
        .outerjoin(Provider, col(Provider.id) == WaitlistEntry.provider_id)
        .where(WaitlistEntry.id == entry.id)
    ).one()
    return _build_views(actor, uow, [row])[0]


# -- reading -------------------------------------------------------------------------------------------


@service_function
def get_entry(actor: Actor, uow: UnitOfWork, entry_id: uuid.UUID) -> EntryView:
    """One entry in the actor's scope, with its score, position and live offer."""
    view = entry_view(actor, uow, visible_entry(actor, uow, entry_id))
    record_access(actor, uow, action="waitlist.entry", patient_ids=[view.patient_id])
    return view


@service_function
def list_entries(
    actor: Actor,
    uow: UnitOfWork,
    *,
    clinic_id: uuid.UUID | None = None,
    provider_id: uuid.UUID | None = None,
    status: EntryStatus | None = None,
    urgency: int | None = None,
    min_age_days: int | None = None,
    limit: int = 200,
) -> list[EntryView]:
    """List waitlist entries: a patient's own, those a doctor can serve, or all of the practice.

    Most urgent first, then oldest first."""
    query = _scoped_query(actor)
    if clinic_id is not None:
        query = query.where(WaitlistEntry.clinic_id == clinic_id)
    if provider_id is not None:
        query = query.where(WaitlistEntry.provider_id == provider_id)
    if status is not None:
        query = query.where(WaitlistEntry.status == status)
    if urgency is not None:
        query = query.where(WaitlistEntry.urgency == urgency)
    if min_age_days is not None:
        query = query.where(col(WaitlistEntry.created_at) <= utcnow() - timedelta(days=max(0, min_age_days)))
    query = query.order_by(col(WaitlistEntry.urgency).desc(), col(WaitlistEntry.created_at))
    query = query.limit(max(1, min(limit, 1000)))
    views = _build_views(actor, uow, list(uow.session.exec(query)))
    record_access(actor, uow, action="waitlist.list", patient_ids=[v.patient_id for v in views])
    return views


@service_function
def ranked_entries(
    actor: Actor, uow: UnitOfWork, *, provider_id: uuid.UUID | None = None, clinic_id: uuid.UUID | None = None
) -> list[EntryView]:
    """Active entries in the actor's scope, best first, with score, reasons and queue position (staff)."""
    require_role(actor, Role.DOCTOR, Role.ADMIN)
    query = _scoped_query(actor).where(col(WaitlistEntry.status).in_(ACTIVE_ENTRY_STATUSES))
    if clinic_id is not None:
        query = query.where(WaitlistEntry.clinic_id == clinic_id)
    if provider_id is not None:
        query = query.where(WaitlistEntry.provider_id == provider_id)
    views = _build_views(actor, uow, list(uow.session.exec(query)))
    views.sort(key=lambda v: (-v.score, v.created_at, str(v.id)))
    record_access(actor, uow, action="waitlist.ranked", patient_ids=[v.patient_id for v in views])
    return views


# -- joining -------------------------------------------------------------------------------------------


def _patient_for(actor: Actor, uow: UnitOfWork, patient_id: uuid.UUID | None) -> uuid.UUID:
    """A patient joins for themself; staff name a patient of the practice."""
    if actor.role == Role.PATIENT:
        if actor.patient_id is None or (patient_id is not None and patient_id != actor.patient_id):
            raise PermissionDenied("patients join waitlists for themselves only")
        return actor.patient_id
    require_role(actor, Role.DOCTOR, Role.ADMIN)
    if patient_id is None:
        raise ValidationFailed("patient_id is required when staff add a patient to a waitlist", field="patient_id")
    if uow.session.get(Patient, patient_id) is None:
        raise NotFound("patient")
    return patient_id


def parse_windows(raw: Sequence[Any]) -> list[dict[str, Any]]:
    """Validate preferred windows; return them normalized ({"weekday", "start": "HH:MM", "end": "HH:MM"})."""
    if not isinstance(raw, list | tuple):
        raise ValidationFailed("windows must be a list", field="windows")
    if len(raw) > MAX_WINDOWS:
        raise ValidationFailed(f"at most {MAX_WINDOWS} windows", field="windows")
    parsed = []
    for i, item in enumerate(raw, start=1):
        try:
            if not isinstance(item, dict):
                raise ValueError('a window is {"weekday": 0-6, "start": "HH:MM", "end": "HH:MM"}')
            window = Window.parse(item)
        except KeyError as exc:
            raise ValidationFailed(
                f"window {i}: missing {exc.args[0]}", field="windows", code=Code.WAITLIST_WINDOW_INVALID
            ) from exc
        except (ValueError, TypeError) as exc:
            raise ValidationFailed(f"window {i}: {exc}", field="windows", code=Code.WAITLIST_WINDOW_INVALID) from exc
        parsed.append({"weekday": window.weekday, "start": f"{window.start:%H:%M}", "end": f"{window.end:%H:%M}"})
    return parsed


def _check_target(uow: UnitOfWork, request: JoinRequest) -> tuple[Clinic, Provider | None, str | None, str | None]:
    clinic = uow.session.get(Clinic, request.clinic_id)
    if clinic is None:
        raise NotFound("clinic")
    if clinic.archived_at is not None:
        raise ValidationFailed("This clinic is archived and takes no new waitlist entries.", field="clinic_id")
    provider = None
    if request.provider_id is not None:
        provider = uow.session.get(Provider, request.provider_id)
        if provider is None or not provider.active:
            raise NotFound("provider")
        if clinic.id not in _works_at(uow, provider.id):
            raise ValidationFailed("provider does not work at this clinic", field="provider_id")
    modality = request.modality or None
    if modality is not None:
        if modality not in MODALITIES:
            raise ValidationFailed(f"modality must be one of {', '.join(MODALITIES)} (or empty for either)",
                                   field="modality")  # fmt: skip
        if provider is not None and provider.modalities and modality not in provider.modalities:
            raise ValidationFailed(f"this provider does not offer {modality.replace('_', ' ')}", field="modality")
    specialty = (request.specialty or "").strip() or None
    if specialty is not None:
        if len(specialty) > 80:
            raise ValidationFailed("specialty must have at most 80 characters", field="specialty")
        wanted = specialty.lower()
        if provider is not None:
            offered = [s.lower() for s in provider.specialties]
            if offered and wanted not in offered:
                raise ValidationFailed(f"this provider does not offer {specialty}", field="specialty")
        else:
            at_clinic = uow.session.exec(
                select(Provider.specialties)
                .join(ProviderClinic, col(ProviderClinic.provider_id) == Provider.id)
                .where(ProviderClinic.clinic_id == clinic.id, col(Provider.active).is_(True))
            ).all()
            if not any(wanted in [s.lower() for s in specs or []] for specs in at_clinic):
                raise ValidationFailed(f"no provider at this clinic offers {specialty}", field="specialty")
    return clinic, provider, specialty, modality


def _check_request(actor: Actor, request: JoinRequest, clinic: Clinic) -> tuple[int, str, list[dict[str, Any]]]:
    windows = parse_windows(request.windows)
    if request.earliest_date and request.latest_date and request.earliest_date > request.latest_date:
        raise ValidationFailed(
            "earliest_date must not be after latest_date", field="latest_date", code=Code.WAITLIST_DATES_REVERSED
        )
    today = utcnow().astimezone(ZoneInfo(clinic.timezone)).date()
    if request.latest_date is not None and request.latest_date < today:
        raise ValidationFailed("latest_date is in the past", field="latest_date", code=Code.WAITLIST_LATEST_DATE_PAST)
    urgency = request.urgency
    if isinstance(urgency, bool) or not isinstance(urgency, int) or not 1 <= urgency <= 4:
        raise ValidationFailed("urgency must be 1 (routine) to 4 (urgent)", field="urgency")
    if urgency == 4 and not actor.is_staff:
        raise ValidationFailed("urgency 4 (urgent) is set by the practice; choose 1 to 3", field="urgency")
    reason = (request.reason or "").strip()
    if len(reason) > MAX_REASON:
        raise ValidationFailed(
            f"reason must have at most {MAX_REASON} characters",
            field="reason",
            code=Code.WAITLIST_REASON_TOO_LONG,
            params={"limit": MAX_REASON},
        )
    return urgency, reason, windows


def _lock(uow: UnitOfWork, what: str) -> None:
    if uow.session.get_bind().dialect.name == "postgresql":
        uow.session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": f"{uow.tenant_id}:{what}"}
        )


def _active_count(uow: UnitOfWork, *where: Any) -> int:
    query = (
        select(func.count())
        .select_from(WaitlistEntry)
        .where(col(WaitlistEntry.status).in_(ACTIVE_ENTRY_STATUSES), *where)
    )
    return int(uow.session.exec(query).one())


def _changed(uow: UnitOfWork, entry: WaitlistEntry) -> None:
    events.emit(
        uow,
        "waitlist.changed",
        entity_id=entry.id,
        clinic_id=entry.clinic_id,
        provider_id=entry.provider_id,
        patient_id=entry.patient_id,
        status=str(entry.status),
    )


@service_function
def join_waitlist(actor: Actor, uow: UnitOfWork, request: JoinRequest) -> WaitlistEntry:
    """Put a patient on a waitlist (themself, or staff for a patient of the practice)."""
    patient_id = _patient_for(actor, uow, request.patient_id)
    clinic, provider, specialty, modality = _check_target(uow, request)
    urgency, reason, windows = _check_request(actor, request, clinic)
    policy = effective_policy(uow, clinic.id)

    # One patient's joins queue here: the duplicate and per-patient checks below then see each other.
    _lock(uow, f"waitlist-patient:{patient_id}")
    key = target_key(clinic.id, provider.id if provider else None, specialty, modality)
    if _active_count(uow, WaitlistEntry.patient_id == patient_id, WaitlistEntry.target_key == key):
        raise Conflict(DUPLICATE, code=Code.WAITLIST_ALREADY_ON)
    if _active_count(uow, WaitlistEntry.patient_id == patient_id) >= policy.max_entries_per_patient:
        raise ValidationFailed(
            f"max_entries_per_patient ({policy.max_entries_per_patient}) reached",
            field="patient_id",
            code=Code.WAITLIST_MAX_ENTRIES_PER_PATIENT,
            params={"limit": policy.max_entries_per_patient},
        )
    counters.reserve(
        uow,
        clinic_id=clinic.id,
        provider_id=provider.id if provider else None,
        provider_limit=policy.max_active_per_provider,
        clinic_limit=policy.max_active_per_clinic,
    )
    now = utcnow()
    entry = WaitlistEntry(
        tenant_id=actor.tenant_id,
        patient_id=patient_id,
        clinic_id=clinic.id,
        provider_id=provider.id if provider else None,
        specialty=specialty,
        modality=modality,
        preferred_windows=windows,
        timezone=clinic.timezone,
        earliest_date=request.earliest_date,
        latest_date=request.latest_date,
        urgency=urgency,
        reason=reason,
        status=EntryStatus.WAITING,
        created_at=now,
        updated_at=now,
        last_confirmed_at=now,
        expires_at=now + policy.entry_ttl,
    )
    uow.session.add(entry)
    try:
        uow.flush()
    except IntegrityError as exc:
        if "uq_waitlist_entries_active_target" in str(exc.orig):
            raise Conflict(DUPLICATE, code=Code.WAITLIST_ALREADY_ON) from exc
        raise
    record(
        actor,
        uow,
        action="waitlist.joined",
        entity_type="waitlist_entry",
        entity_id=entry.id,
        data={
            "patient_id": str(patient_id),
            "clinic_id": str(clinic.id),
            "provider_id": str(provider.id) if provider else None,
            "by_role": str(actor.role),
        },
    )
    _changed(uow, entry)
    return entry


# -- leaving and confirming ----------------------------------------------------------------------------


def _withdraw_offers_directly(actor: Actor, uow: UnitOfWork, entry: WaitlistEntry) -> None:
    """Used only while backend.waitlist.offers is absent: withdraw pending offers, cancel their holds."""
    from backend.scheduling import cache

    now = utcnow()
    offers = uow.session.exec(
        select(WaitlistOffer)
        .where(WaitlistOffer.entry_id == entry.id, WaitlistOffer.status == OfferStatus.PENDING)
        .with_for_update()
    ).all()
    for offer in offers:
        offer.status = OfferStatus.WITHDRAWN
        offer.responded_at = now
        uow.session.add(offer)
        record(actor, uow, action="waitlist_offer.withdrawn", entity_type="waitlist_offer", entity_id=offer.id)
        if offer.appointment_id is not None:
            hold = uow.session.get(Appointment, offer.appointment_id, with_for_update=True)
            if hold is not None and hold.status == AppointmentStatus.HELD:
                hold.status = AppointmentStatus.CANCELLED
                hold.cancel_reason = "offer withdrawn"
                hold.cancelled_at = now
                hold.updated_at = now
                hold.version += 1
                uow.session.add(hold)
                record(actor, uow, action="appointment.hold_released", entity_type="appointment", entity_id=hold.id)
                events.emit(
                    uow, "slot.freed", entity_id=hold.id, provider_id=hold.provider_id, patient_id=hold.patient_id
                )
                cache.invalidate_provider(uow, hold.provider_id)


def _withdraw_live_offer(actor: Actor, uow: UnitOfWork, entry: WaitlistEntry) -> None:
    if find_spec("backend.waitlist.offers") is not None:
        from backend.waitlist import offers  # the offers engine owns offers and their holds

        withdraw = getattr(offers, "withdraw_live_offer", None)
        if withdraw is not None:
            withdraw(actor, uow, entry)
            return
    _withdraw_offers_directly(actor, uow, entry)


@service_function
def leave_waitlist(actor: Actor, uow: UnitOfWork, entry_id: uuid.UUID) -> WaitlistEntry:
    """The patient leaves (cancelled) or staff remove the entry (removed); a live offer is withdrawn."""
    entry = visible_entry(actor, uow, entry_id, lock=True)
    if entry.status not in ACTIVE_ENTRY_STATUSES:
        raise Conflict(f"This waitlist entry is already {entry.status}.")
    _withdraw_live_offer(actor, uow, entry)
    uow.session.refresh(entry)  # the offers engine may have changed the entry
    if entry.status not in ACTIVE_ENTRY_STATUSES:
        raise Conflict(f"This waitlist entry is already {entry.status}.")
    by_patient = actor.role == Role.PATIENT
    now = utcnow()
    entry.status = EntryStatus.CANCELLED if by_patient else EntryStatus.REMOVED
    entry.updated_at = now
    entry.version += 1
    uow.session.add(entry)
    counters.release(uow, entry)
    record(
        actor,
        uow,
        action="waitlist.cancelled" if by_patient else "waitlist.removed",
        entity_type="waitlist_entry",
        entity_id=entry.id,
        data={"patient_id": str(entry.patient_id), "by_role": str(actor.role)},
    )
    _changed(uow, entry)
    uow.flush()
    return entry


@service_function
def confirm_interest(actor: Actor, uow: UnitOfWork, entry_id: uuid.UUID) -> WaitlistEntry:
    """Still interested: the entry's time to live starts again from now."""
    entry = visible_entry(actor, uow, entry_id, lock=True)
    if entry.status not in ACTIVE_ENTRY_STATUSES:
        raise Conflict(f"This waitlist entry is {entry.status} and can no longer be confirmed.")
    now = utcnow()
    entry.last_confirmed_at = now
    entry.reconfirm_requested_at = None
    entry.expires_at = now + effective_policy(uow, entry.clinic_id).entry_ttl
    entry.updated_at = now
    entry.version += 1
    uow.session.add(entry)
    record(actor, uow, action="waitlist.confirmed", entity_type="waitlist_entry", entity_id=entry.id)
    _changed(uow, entry)
    uow.flush()
    return entry


# -- policy --------------------------------------------------------------------------------------------

_INT_FIELDS = {
    "max_active_per_provider",
    "max_active_per_clinic",
    "max_entries_per_patient",
    "entry_ttl_days",
    "reconfirm_interval_days",
    "offer_hold_minutes",
    "offers_per_batch",
    "cutoff_minutes_before_slot",
}
_TIME_FIELDS = {"quiet_hours_start", "quiet_hours_end"}
_BOOL_FIELDS = {"auto_offer", "expire_entry_on_decline"}
POLICY_FIELDS = (*POLICY_BOUNDS, *sorted(_TIME_FIELDS), *sorted(_BOOL_FIELDS))


def _hhmm(value: time | None) -> str | None:
    return None if value is None else f"{value:%H:%M}"


def _policy_view(policy: WaitlistPolicy, clinic_id: uuid.UUID | None, source: str) -> PolicyView:
    return PolicyView(
        clinic_id=clinic_id,
        source=source,
        max_active_per_provider=policy.max_active_per_provider,
        max_active_per_clinic=policy.max_active_per_clinic,
        max_entries_per_patient=policy.max_entries_per_patient,
        entry_ttl_days=policy.entry_ttl_days,
        reconfirm_interval_days=policy.reconfirm_interval_days,
        offer_hold_minutes=policy.offer_hold_minutes,
        offers_per_batch=policy.offers_per_batch,
        cutoff_minutes_before_slot=policy.cutoff_minutes_before_slot,
        quiet_hours_start=_hhmm(policy.quiet_hours_start),
        quiet_hours_end=_hhmm(policy.quiet_hours_end),
        urgency_weight=policy.urgency_weight,
        wait_weight=policy.wait_weight,
        fit_weight=policy.fit_weight,
        continuity_weight=policy.continuity_weight,
        auto_offer=policy.auto_offer,
        expire_entry_on_decline=policy.expire_entry_on_decline,
        updated_at=policy.updated_at if source != "default" else None,
    )


def _policy_rows(uow: UnitOfWork, clinic_id: uuid.UUID | None) -> tuple[WaitlistPolicy | None, WaitlistPolicy | None]:
    """(the clinic's override, the practice default), either None when absent."""
    rows = uow.session.exec(
        select(WaitlistPolicy).where(
            (col(WaitlistPolicy.clinic_id) == clinic_id) | col(WaitlistPolicy.clinic_id).is_(None)
        )
    ).all()
    own = next((p for p in rows if clinic_id is not None and p.clinic_id == clinic_id), None)
    default = next((p for p in rows if p.clinic_id is None), None)
    return own, default


def _known_clinic(uow: UnitOfWork, clinic_id: uuid.UUID | None) -> None:
    if clinic_id is not None and uow.session.get(Clinic, clinic_id) is None:
        raise NotFound("clinic")


def _resolved(uow: UnitOfWork, clinic_id: uuid.UUID | None) -> tuple[WaitlistPolicy, str]:
    own, default = _policy_rows(uow, clinic_id)
    if own is not None:
        return own, "clinic"
    if default is not None:
        return default, "practice"
    return WaitlistPolicy(tenant_id=uuid.UUID(int=0)), "default"


@service_function
def get_waitlist_policy(actor: Actor, uow: UnitOfWork, clinic_id: uuid.UUID | None = None) -> PolicyView:
    """The policy in force for the practice (no clinic) or a clinic, and where it comes from (admin)."""
    require_role(actor, Role.ADMIN)
    _known_clinic(uow, clinic_id)
    policy, source = _resolved(uow, clinic_id)
    return _policy_view(policy, clinic_id, source)


def _clean_changes(changes: dict[str, Any]) -> dict[str, Any]:
    """Check every change against POLICY_BOUNDS and the field's type; raise ValidationFailed naming the field."""
    clean: dict[str, Any] = {}
    for name, value in changes.items():
        if name not in POLICY_FIELDS:
            raise ValidationFailed(f"{name} is not a waitlist policy setting", field=name)
        if name in _TIME_FIELDS:
            if value is None or isinstance(value, time):
                clean[name] = value
                continue
            try:
                parsed = time.fromisoformat(str(value))
            except ValueError as exc:
                raise ValidationFailed(f"{name} must be a time as HH:MM, or null", field=name) from exc
            clean[name] = parsed.replace(second=0, microsecond=0)
            continue
        if name in _BOOL_FIELDS:
            if not isinstance(value, bool):
                raise ValidationFailed(f"{name} must be true or false", field=name)
            clean[name] = value
            continue
        low, high = POLICY_BOUNDS[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValidationFailed(f"{name} must be a number from {low:g} to {high:g}", field=name)
        if name in _INT_FIELDS and value != int(value):
            raise ValidationFailed(f"{name} must be a whole number", field=name)
        if not low <= value <= high:
            raise ValidationFailed(f"{name} must be from {low:g} to {high:g}", field=name)
        clean[name] = int(value) if name in _INT_FIELDS else float(value)
    return clean


@service_function
def put_waitlist_policy(
    actor: Actor, uow: UnitOfWork, clinic_id: uuid.UUID | None, changes: dict[str, Any]
) -> PolicyView:
    """Change the practice default (clinic_id None) or a clinic's override, creating it when absent (admin).

    A new clinic override starts from the values in force there (the practice default or the built-ins)."""
    require_role(actor, Role.ADMIN)
    _known_clinic(uow, clinic_id)
    clean = _clean_changes(changes)
    _lock(uow, f"waitlist-policy:{clinic_id or 'practice'}")
    own, default = _policy_rows(uow, clinic_id)
    policy = own if clinic_id is not None else default
    created = policy is None
    if policy is None:
        base = default if clinic_id is not None and default is not None else WaitlistPolicy(tenant_id=actor.tenant_id)
        policy = WaitlistPolicy(
            tenant_id=actor.tenant_id,
            clinic_id=clinic_id,
            **{name: getattr(base, name) for name in POLICY_FIELDS},
        )
    start = clean.get("quiet_hours_start", policy.quiet_hours_start)
    end = clean.get("quiet_hours_end", policy.quiet_hours_end)
    if start is not None and end is not None and start == end:
        raise ValidationFailed("quiet_hours_end must differ from quiet_hours_start", field="quiet_hours_end")
    changed = sorted(name for name, value in clean.items() if getattr(policy, name) != value)
    for name in changed:
        setattr(policy, name, clean[name])
    if created or changed:
        policy.updated_at = utcnow()
        if created:
            # The ORM would let a column default replace None on insert: cleared quiet hours must stay NULL.
            for name in _TIME_FIELDS:
                if getattr(policy, name) is None:
                    setattr(policy, name, sa.null())
        uow.session.add(policy)
        uow.flush()
        if created:
            uow.session.refresh(policy)
        record(
            actor,
            uow,
            action="waitlist_policy.updated",
            entity_type="waitlist_policy",
            entity_id=policy.id,
            data={"clinic_id": str(clinic_id) if clinic_id else None, "fields": changed, "created": created},
        )
        events.emit(uow, "waitlist.policy_changed", entity_id=policy.id, clinic_id=clinic_id)
    return _policy_view(policy, clinic_id, "clinic" if clinic_id is not None else "practice")


@service_function
def delete_clinic_waitlist_policy(actor: Actor, uow: UnitOfWork, clinic_id: uuid.UUID) -> None:
    """Drop a clinic's override: the clinic falls back to the practice default (admin). No override: no-op."""
    require_role(actor, Role.ADMIN)
    _known_clinic(uow, clinic_id)
    own, _ = _policy_rows(uow, clinic_id)
    if own is None:
        return
    uow.session.delete(own)
    record(
        actor,
        uow,
        action="waitlist_policy.deleted",
        entity_type="waitlist_policy",
        entity_id=own.id,
        data={"clinic_id": str(clinic_id)},
    )
    events.emit(uow, "waitlist.policy_changed", entity_id=own.id, clinic_id=clinic_id)
    uow.flush()
