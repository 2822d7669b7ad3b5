"""Provider search: the practice's directory filtered by clinic, specialty, modality, language and text,
each provider with its next free slot, soonest first.

Where the next free slots come from
----------------------------------
* PostgreSQL keeps each provider's next free slot (``provider_next_free``, backend/scheduling/next_free.py):
  marked stale inside the transaction of every change that may move it (``cache.invalidate_provider``: booking,
  hold, release, cancellation, availability and time-off edits, clinic changes), computed again by the first search
  that needs it (or the sweep task ``scheduling.refresh_next_free_tick``), and stored only if no change came
  meanwhile.
  Stale by time too: its ``fresh_until`` (the slot sliding into the minimum notice, a live hold on an earlier slot
  expiring) and ``next_free.MAX_AGE``.
* Redis is the warm layer (tenant id in every key, see backend/scheduling/cache.py):
  ``directory_key(tenant)``, the practice's active providers with their attributes and open clinics (forgotten
  when clinics change, backend/tenancy/service.py; whoever edits providers or their clinic links must call
  ``cache.invalidate_directory`` too), and ``next_free_key(tenant, provider)``, a copy of the provider's stored
  slot with its ``fresh_until`` (past it the entry counts as a miss).

A warm search costs one MGET and no SQL: the process remembers the last directory it saw per practice,
only as a guess of which next-free keys to ask for beside the directory. Redis's directory stays
authoritative: when it differs from the guess, the missing keys are fetched with a second MGET.
With an empty cache a search is one indexed statement: the directory with each provider's stored slot (LEFT
JOIN by primary key); with the directory cached but slots missing, one statement reads those rows by primary
key. Only rows that are not current are computed (a few statements each). Without Redis (REDIS_URL unset) every
search reads PostgreSQL that way; on SQLite (the embedded mode) nothing is stored and missing slots are computed.

Known limit: a search that reads a provider's stored slot just before a change marks it, and copies it into
Redis just after the change forgot the Redis copy, leaves a stale copy for at most ``cache.TTL_SECONDS``. The
entry is only a hint shown in search; booking re-checks the slot.
"""

from __future__ import annotations

import functools
import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeGuard

import sqlalchemy as sa
from sqlalchemy import func
from sqlmodel import col, select

from backend.db import UnitOfWork
from backend.errors import ValidationFailed
from backend.identity.models import Provider, ProviderClinic
from backend.scheduling import cache, next_free
from backend.scheduling.models import Appointment, AppointmentStatus
from backend.scheduling.policy import BookingRules, booking_rules
from backend.scheduling.service import busy_intervals, weekly_rules
from backend.scheduling.slots import Slot, generate_slots
from backend.service import service_function
from backend.tenancy.context import Actor
from backend.tenancy.models import Clinic
from backend.types import utcnow

logger = logging.getLogger(__name__)

__all__ = ["NextFree", "ProviderCard", "cache_hit_rate", "next_free_slot", "search_facets", "search_providers"]

MAX_FILTER_LENGTH = 100
# The first window asked for covers the common case (someone is free within two weeks) with small queries.
_FIRST_WINDOW = timedelta(days=14)
_HINT_TENANTS = 256


@dataclass(frozen=True)
class ProviderCard:
    """A provider as search shows it: who, where, and the soonest free slot."""

    id: uuid.UUID
    full_name: str
    title: str
    kind: str
    specialties: list[str]
    languages: list[str]
    modalities: list[str]
    clinics: list[dict[str, str]]  # [{"id": str, "name": str, "timezone": str}], open clinics by name
    next_free_start: datetime | None  # aware UTC, the earliest free slot within the booking horizon
    next_free_end: datetime | None
    next_free_clinic_id: uuid.UUID | None
    next_free_timezone: str | None


# -- filters ---------------------------------------------------------------------------------------------


def _clean(value: str | None, name: str) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if len(value) > MAX_FILTER_LENGTH:
        raise ValidationFailed(f"{name} must have at most {MAX_FILTER_LENGTH} characters", field=name)
    return value.casefold() or None


@dataclass(frozen=True)
class _Criteria:
    """The attribute filters (everything but free_before, which needs the next free slot)."""

    clinic_id: str | None
    specialty: str | None
    modality: str | None
    language: str | None
    q: str | None

    def matches(self, entry: dict[str, Any]) -> bool:
        if self.clinic_id is not None and self.clinic_id not in {c["id"] for c in entry["clinics"]}:
            return False
        if self.specialty is not None and self.specialty not in _folded(entry["specialties"]):
            return False
        if self.modality is not None and self.modality not in _folded(entry["modalities"]):
            return False
        if self.language is not None and self.language not in _folded(entry["languages"]):
            return False
        if self.q is not None:
            haystack = [entry["full_name"], entry["title"], *entry["specialties"]]
            if not any(self.q in text.casefold() for text in haystack):
                return False
        return True

    def select(self, directory: dict[str, Any]) -> list[dict[str, Any]]:
        return [entry for entry in directory["providers"] if self.matches(entry)]


def _folded(values: Iterable[str]) -> set[str]:
    return {v.casefold() for v in values}


# -- the directory ---------------------------------------------------------------------------------------


@functools.cache
def _directory_query(with_next_free: bool) -> Any:
    """The directory's one statement (built once: building it cost a tenth of a cold search), with or without
    each provider's stored next free slot."""
    columns: list[Any] = [
        col(Provider.id),
        col(Provider.full_name),
        col(Provider.title),
        col(Provider.kind),
        col(Provider.specialties),
        col(Provider.languages),
        col(Provider.modalities),
        col(Clinic.id).label("clinic_id"),
        col(Clinic.name).label("clinic_name"),
        col(Clinic.timezone),
        *(next_free.joined_columns() if with_next_free else ()),
    ]
    query = (
        sa.select(*columns)
        .join(ProviderClinic, col(ProviderClinic.provider_id) == Provider.id)
        .join(Clinic, col(Clinic.id) == ProviderClinic.clinic_id)
        .where(col(Provider.active).is_(True), col(Clinic.archived_at).is_(None))
        .order_by(col(Provider.full_name), col(Provider.id), col(Clinic.name), col(Clinic.id))
    )
    return next_free.outer_join(query, Provider.id) if with_next_free else query


def _load_directory(
    uow: UnitOfWork, *, now: datetime | None = None
) -> tuple[dict[str, Any], dict[uuid.UUID, next_free.Stored] | None]:
    """The practice's active providers with their attributes and open clinics, as JSON-ready values; with `now`
    (and a database that keeps them), each one's stored next free slot too, read in the same statement (a
    provider without a row is absent from that map; None: not read).

    One statement of columns (no ORM objects): each active provider once per open clinic, by name."""
    read_at = now if now is not None and next_free.kept(uow) else None
    with_next_free = read_at is not None
    providers: list[dict[str, Any]] = []
    stored: dict[uuid.UUID, next_free.Stored] = {}
    for row in uow.session.execute(_directory_query(with_next_free)):
        # A provider with no open clinic (their only clinic was archived) can be neither booked nor waited for:
        # the inner joins leave them out, rather than show a card with a blank clinic and a join form that
        # cannot be sent.
        clinic = {"id": str(row.clinic_id), "name": row.clinic_name, "timezone": row.timezone}
        provider_id = str(row.id)
        if providers and providers[-1]["id"] == provider_id:
            providers[-1]["clinics"].append(clinic)
            continue
        if read_at is not None and (found := next_free.stored_of(row, read_at)) is not None:
            stored[row.id] = found
        providers.append(
            {
                "id": provider_id,
                "full_name": row.full_name,
                "title": row.title,
                "kind": row.kind,
                "specialties": list(row.specialties or []),
                "languages": list(row.languages or []),
                "modalities": list(row.modalities or []),
                "clinics": [clinic],
            }
        )
    return {"providers": providers}, stored if with_next_free else None


def _valid_directory(value: Any) -> TypeGuard[dict[str, Any]]:
    return isinstance(value, dict) and isinstance(value.get("providers"), list)


class _DirectoryHints:
    """The last directory seen per practice in this process: a guess of which keys a search will need."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._data: OrderedDict[uuid.UUID, dict[str, Any]] = OrderedDict()

    def get(self, tenant_id: uuid.UUID) -> dict[str, Any] | None:
        with self._lock:
            value = self._data.get(tenant_id)
            if value is not None:
                self._data.move_to_end(tenant_id)
            return value

    def put(self, tenant_id: uuid.UUID, directory: dict[str, Any]) -> None:
        with self._lock:
            self._data[tenant_id] = directory
            self._data.move_to_end(tenant_id)
            while len(self._data) > self._size:
                self._data.popitem(last=False)


_hints = _DirectoryHints(_HINT_TENANTS)


def _directory(actor: Actor, uow: UnitOfWork) -> dict[str, Any]:
    """The directory from the cache, or loaded and cached."""
    key = cache.directory_key(actor.tenant_id)
    (cached,) = cache.get_many(actor.tenant_id, [key])
    if _valid_directory(cached):
        directory = cached
    else:
        directory, _ = _load_directory(uow)
        cache.set_many({key: directory})
    _hints.put(actor.tenant_id, directory)
    return directory


# -- the next free slot ----------------------------------------------------------------------------------


class _Policies:
    """Booking rules per clinic, looked up once per search."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow
        self._rules: dict[uuid.UUID, BookingRules] = {}

    def __call__(self, clinic_id: uuid.UUID) -> BookingRules:
        if clinic_id not in self._rules:
            self._rules[clinic_id] = booking_rules(self._uow, clinic_id)
        return self._rules[clinic_id]


@dataclass(frozen=True)
class NextFree:
    """A provider's earliest free slot (slot None: nothing free within the horizon) and until when that holds."""

    slot: Slot | None
    fresh_until: datetime | None  # None: only the cache's time to live limits it

    def to_json(self) -> dict[str, Any]:
        s = self.slot
        return {
            "start": s.start.isoformat() if s else None,
            "end": s.end.isoformat() if s else None,
            "clinic_id": str(s.clinic_id) if s else None,
            "modality": s.modality if s else None,
            "timezone": s.timezone if s else None,
            "fresh_until": self.fresh_until.isoformat() if self.fresh_until else None,
        }

    @classmethod
    def from_stored(cls, answer: dict[str, Any]) -> NextFree:
        """A current row of provider_next_free (next_free.read's answer)."""
        if answer["slot_start"] is None:
            return cls(None, answer["fresh_until"])
        slot = Slot(
            start=answer["slot_start"],
            end=answer["slot_end"],
            clinic_id=answer["clinic_id"],
            modality=answer["modality"],
            timezone=answer["timezone"],
        )
        return cls(slot, answer["fresh_until"])

    def computed(self, provider_id: uuid.UUID, version: int | None) -> next_free.Computed:
        """This answer as a row to store, computed after reading `version` (None: there was no row)."""
        s = self.slot
        return next_free.Computed(
            provider_id=provider_id,
            version=version,
            clinic_id=s.clinic_id if s else None,
            slot_start=s.start if s else None,
            slot_end=s.end if s else None,
            modality=s.modality if s else None,
            timezone=s.timezone if s else None,
            fresh_until=self.fresh_until,
        )

    @classmethod
    def from_json(cls, value: Any, now: datetime) -> NextFree | None:
        """The cached entry, or None when it is malformed or no longer fresh."""
        if not isinstance(value, dict):
            return None
        try:
            fresh_until = datetime.fromisoformat(value["fresh_until"]) if value.get("fresh_until") else None
            if fresh_until is not None and fresh_until <= now:
                return None
            if value.get("start") is None:
                return cls(None, fresh_until)
            start = datetime.fromisoformat(value["start"])
            if start <= now:
                return None
            slot = Slot(
                start=start.astimezone(UTC),
                end=datetime.fromisoformat(value["end"]).astimezone(UTC),
                clinic_id=uuid.UUID(value["clinic_id"]),
                modality=value["modality"],
                timezone=value["timezone"],
            )
            return cls(slot, fresh_until)
        except (KeyError, TypeError, ValueError):
            return None


def next_free_slot(
    uow: UnitOfWork,
    provider_id: uuid.UUID,
    *,
    now: datetime,
    policies: _Policies | None = None,
) -> NextFree:
    """Compute a provider's earliest free slot in [now, now + horizon], with each clinic's notice and horizon."""
    rules_of = policies or _Policies(uow)
    rules = weekly_rules(uow, provider_id)
    if not rules:
        return NextFree(None, None)
    per_clinic = {r.clinic_id: rules_of(r.clinic_id) for r in rules}
    min_notice = min(p.min_notice for p in per_clinic.values())
    horizon = max(p.horizon for p in per_clinic.values())
    longest = timedelta(minutes=max(r.session_minutes for r in rules))
    end = now + horizon + timedelta(microseconds=1)  # a slot starting exactly at the horizon is kept
    found: Slot | None = None
    lo = now
    while lo < end and found is None:
        hi = min(lo + _FIRST_WINDOW, end) if lo == now else end
        time_off, booked, held = busy_intervals(uow, provider_id, lo, hi + longest, now=now)
        for slot in generate_slots(
            rules,
            window_start=lo,
            window_end=hi,
            time_off=time_off,
            booked=booked,
            held=held,
            now=now,
            min_notice=min_notice,
            horizon=horizon,
        ):
            clinic = per_clinic[slot.clinic_id]
            if now + clinic.min_notice <= slot.start <= now + clinic.horizon:
                found = slot
                break
        lo = hi
    # The answer changes on its own when the slot slides into the minimum notice, or when a live hold on an
    # earlier slot expires (expiry invalidates nothing).
    limits: list[datetime] = []
    if found is not None:
        limits.append(found.start - per_clinic[found.clinic_id].min_notice)
    hold_query = select(func.min(Appointment.hold_expires_at)).where(
        Appointment.provider_id == provider_id,
        Appointment.status == AppointmentStatus.HELD,
        col(Appointment.hold_expires_at) > now,
        Appointment.start_at < (found.start if found is not None else end),
    )
    next_expiry = uow.session.exec(hold_query).one()
    if next_expiry is not None:
        limits.append(next_expiry if next_expiry.tzinfo else next_expiry.replace(tzinfo=UTC))
    return NextFree(found, min(limits) if limits else None)


# -- search ----------------------------------------------------------------------------------------------


@service_function
def search_providers(
    actor: Actor,
    uow: UnitOfWork,
    *,
    clinic_id: uuid.UUID | None = None,
    specialty: str | None = None,
    modality: str | None = None,
    language: str | None = None,
    q: str | None = None,
    free_before: date | None = None,
) -> list[ProviderCard]:
    """Find the practice's active providers (every role may search), those free soonest first.

    Filters combine with AND: ``clinic_id`` (works at that open clinic), ``specialty``, ``modality`` and
    ``language`` (case-insensitive exact members), ``q`` (case-insensitive substring of name, title or a
    specialty), ``free_before`` (the next free slot starts before midnight UTC at the start of that date,
    i.e. by the end of the previous day in UTC).
    """
    criteria = _Criteria(
        clinic_id=str(clinic_id) if clinic_id is not None else None,
        specialty=_clean(specialty, "specialty"),
        modality=_clean(modality, "modality"),
        language=_clean(language, "language"),
        q=_clean(q, "q"),
    )
    tenant = actor.tenant_id
    directory_key = cache.directory_key(tenant)

    # One MGET: the directory and the next-free keys of the providers the last known directory suggests.
    hint = _hints.get(tenant)
    guessed = [entry["id"] for entry in criteria.select(hint)] if hint is not None else []
    values = cache.get_many(tenant, [directory_key, *(cache.next_free_key(tenant, uuid.UUID(i)) for i in guessed)])
    cached: dict[str, Any] = dict(zip(guessed, values[1:], strict=True))
    to_store: dict[str, Any] = {}
    now = utcnow()
    stored: dict[uuid.UUID, next_free.Stored] | None = None  # the providers' rows, when read with the directory
    if _valid_directory(values[0]):
        directory = values[0]
    else:
        directory, stored = _load_directory(uow, now=now)
        to_store[directory_key] = directory
    _hints.put(tenant, directory)

    entries = criteria.select(directory)
    unasked = [entry["id"] for entry in entries if entry["id"] not in cached]
    if unasked:  # the directory changed since this process last saw it
        keys = [cache.next_free_key(tenant, uuid.UUID(i)) for i in unasked]
        cached.update(zip(unasked, cache.get_many(tenant, keys), strict=True))

    answers: dict[uuid.UUID, NextFree] = {}
    for entry in entries:
        found = NextFree.from_json(cached.get(entry["id"]), now)
        if found is not None:
            answers[uuid.UUID(entry["id"])] = found
    missing = [uuid.UUID(entry["id"]) for entry in entries if uuid.UUID(entry["id"]) not in answers]
    if missing:  # not in Redis: the stored rows (one statement, or none: read with the directory), computing
        # those that are not current
        computed = _stored_or_computed(actor, uow, missing, now=now, answers=answers, stored=stored)
        to_store.update({cache.next_free_key(tenant, p): answers[p].to_json() for p in missing})
        try:
            next_free.store(actor, computed, now=now, engine=next_free.engine_of(uow))
        except Exception:  # the answers stand; only the next search's shortcut is lost (it computes again)
            logger.exception("could not store %d next free slot(s)", len(computed))
    cache.set_many(to_store)
    cards = [_card(entry, answers[uuid.UUID(entry["id"])].slot) for entry in entries]

    if free_before is not None:
        cutoff = datetime.combine(free_before, time(0, 0), tzinfo=UTC)
        cards = [c for c in cards if c.next_free_start is not None and c.next_free_start < cutoff]
    cards.sort(key=_order)
    return cards


def _stored_or_computed(
    actor: Actor,
    uow: UnitOfWork,
    provider_ids: list[uuid.UUID],
    *,
    now: datetime,
    answers: dict[uuid.UUID, NextFree],
    stored: dict[uuid.UUID, next_free.Stored] | None = None,
) -> list[next_free.Computed]:
    """Fill `answers` for these providers from their current rows (`stored`, read already, or read now),
    computing the others; return those computed, to store."""
    if stored is None:
        stored = next_free.read(uow, provider_ids, now=now)
    policies = _Policies(uow)
    computed: list[next_free.Computed] = []
    for provider_id in provider_ids:
        row = stored.get(provider_id)
        if row is not None and row.answer is not None:
            answers[provider_id] = NextFree.from_stored(row.answer)
            continue
        answer = next_free_slot(uow, provider_id, now=now, policies=policies)
        answers[provider_id] = answer
        computed.append(answer.computed(provider_id, row.version if row is not None else None))
    return computed


def refresh_next_free(tenant_id: uuid.UUID, provider_ids: list[uuid.UUID]) -> int:
    """Compute again the stored next free slots of these providers that are not current (the worker's part after
    a change); returns how many were computed. The cached copies were already forgotten by the change."""
    actor = Actor.system(tenant_id)
    now = utcnow()
    with UnitOfWork(actor) as uow:
        computed = _stored_or_computed(actor, uow, provider_ids, now=now, answers={})
        engine = next_free.engine_of(uow)
    next_free.store(actor, computed, now=now, engine=engine)
    return len(computed)


def _card(entry: dict[str, Any], slot: Slot | None) -> ProviderCard:
    return ProviderCard(
        id=uuid.UUID(entry["id"]),
        full_name=entry["full_name"],
        title=entry["title"],
        kind=entry["kind"],
        specialties=list(entry["specialties"]),
        languages=list(entry["languages"]),
        modalities=list(entry["modalities"]),
        clinics=[dict(c) for c in entry["clinics"]],
        next_free_start=slot.start if slot else None,
        next_free_end=slot.end if slot else None,
        next_free_clinic_id=slot.clinic_id if slot else None,
        next_free_timezone=slot.timezone if slot else None,
    )


def _order(card: ProviderCard) -> tuple[Any, ...]:
    """Free providers first, soonest first; then by name (the id breaks ties, so the order is stable)."""
    if card.next_free_start is not None:
        return (0, card.next_free_start, card.full_name.casefold(), str(card.id))
    return (1, datetime.min.replace(tzinfo=UTC), card.full_name.casefold(), str(card.id))


@service_function
def search_facets(actor: Actor, uow: UnitOfWork) -> dict[str, list[str]]:
    """List the specialties and languages of the practice's active providers (for search filters)."""
    directory = _directory(actor, uow)
    facets: dict[str, list[str]] = {}
    for name in ("specialties", "languages"):
        seen: dict[str, str] = {}
        for entry in directory["providers"]:
            for value in entry[name]:
                seen.setdefault(value.casefold(), value)  # one spelling per value, the first seen
        facets[name] = sorted(seen.values(), key=str.casefold)
    return facets


def cache_hit_rate(tenant_id: uuid.UUID) -> dict[str, float | int]:
    """The practice's search cache hits, misses and hit rate (0..1; 0 before any lookup)."""
    counts = cache.stats(tenant_id)
    total = counts["hits"] + counts["misses"]
    return {"hits": counts["hits"], "misses": counts["misses"], "rate": counts["hits"] / total if total else 0.0}
