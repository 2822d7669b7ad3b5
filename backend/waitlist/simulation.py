"""Simulate weeks of a practice's waitlist on the real service layer, on a virtual clock, under several policies.

A `World` is what happened (clinics, providers and their hours, the booked appointments and when each was
cancelled, who joined the waitlist when, with which preferences) and who the patients are (how often and how fast
they answer, how keen they are). `simulate(world, policies)` loads it once into a database of its own (SQLite in a
temporary directory unless an engine factory is given), copies that database for each policy, and replays the
weeks in virtual time through the real services: cancel_appointment, join_waitlist, offer_freed_slot,
accept_offer, decline_offer, expire_due_offers and book_appointment, each in its own unit of work with utcnow()
reading the virtual clock (backend.types.virtual_clock). The cascade the Celery task would run after a decline or
an expiry is run here by direct call, at the same virtual moment; nothing is published, enqueued or sent.

Our policy ("ours") is the product's engine with a WaitlistPolicy row of the given settings. The batch policies of
other platforms and front-desk phoning are not product features: a policy layer here picks whom to contact (in
order of joining, from lists that know no preferred times of day) and the patients who say yes book through
book_appointment, first come first served. Every policy sees the same month and the same patients: a patient's
answer to a slot (whether, how fast, yes or no) is drawn from a random stream seeded by (seed, patient, slot)
alone, so it does not depend on the policy. No wall clock is read: same world and seed, same figures.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import math
import random
import shutil
import sqlite3
import statistics
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from backend.db import UnitOfWork, make_engine
from backend.errors import DomainError
from backend.identity.models import Patient, Provider, ProviderClinic
from backend.scheduling.booking import book_appointment, cancel_appointment
from backend.scheduling.models import AvailabilityRule, BookingPolicy
from backend.tenancy.context import Actor, Role
from backend.tenancy.models import Clinic, Tenant
from backend.types import virtual_clock
from backend.waitlist.models import WaitlistOffer, WaitlistPolicy
from backend.waitlist.offers import accept_offer, decline_offer, expire_due_offers, offer_freed_slot
from backend.waitlist.policy import EffectivePolicy
from backend.waitlist.ranking import Candidate, OpenSlot, Window, ineligibility
from backend.waitlist.service import JoinRequest, join_waitlist

# -- the world ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimClinic:
    name: str
    timezone: str


@dataclass(frozen=True)
class SimProvider:
    name: str
    clinic: int  # index into World.clinics
    specialty: str
    # (weekday 0-6, start, end) in the clinic's local time
    hours: tuple[tuple[int, time, time], ...]
    session_minutes: int = 50
    buffer_minutes: int = 10


@dataclass(frozen=True)
class SimPatient:
    """How a patient answers: chance of answering at all, median minutes to answer (spread: the log-normal's
    sigma, 0 for always exactly reply_minutes), keenness (0..1)."""

    answers: float = 0.85
    reply_minutes: float = 6.0
    keenness: float = 0.55
    reply_spread: float = 0.9


@dataclass(frozen=True)
class SimAppointment:
    provider: int
    patient: int
    start: datetime  # aware UTC, a session start of the provider
    booked_at: datetime  # before the world's start
    cancelled_at: datetime | None = None  # inside [start of the world, start of the appointment)


@dataclass(frozen=True)
class SimEntry:
    patient: int
    clinic: int
    joined_at: datetime
    provider: int | None = None  # None: any provider of the clinic
    windows: tuple[tuple[int, str, str], ...] = ()  # (weekday, "HH:MM", "HH:MM") local to the clinic
    urgency: int = 1
    earliest_date: date | None = None
    latest_date: date | None = None
    original: int | None = None  # index of the patient's current (later) appointment, if any


@dataclass(frozen=True)
class World:
    start: datetime
    end: datetime
    seed: int
    clinics: tuple[SimClinic, ...]
    providers: tuple[SimProvider, ...]
    patients: tuple[SimPatient, ...]
    appointments: tuple[SimAppointment, ...]
    entries: tuple[SimEntry, ...]


# -- policies ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """How freed slots are offered. kind: "ours" (the product's engine), "batch" (a platform's list: several
    patients at once, no hold, first to book wins) or "desk" (the front desk phones one patient at a time)."""

    name: str
    kind: str = "ours"
    hold_minutes: int = 30  # ours: the exclusive hold
    cutoff_minutes: int = 120  # no offer, message or call this close to the start
    batch_size: int = 5  # batch: patients contacted per cycle
    cycle_minutes: int = 10  # batch: minutes between cycles
    max_cycles: int | None = None  # batch: cycles per freed slot (None: until it is filled or too close)
    call_minutes: int = 4  # desk: one phone call
    quiet_hours: tuple[time, time] | None = (time(21, 0), time(8, 0))  # no offers or messages go out then
    weights: tuple[float, float, float, float] = (10.0, 1.0, 5.0, 3.0)  # ours: urgency, wait, fit, continuity


OURS = Policy("Ours (ranked, 30 min hold)")


def default_policies() -> list[Policy]:
    """Ours with the default settings and shorter holds, two platforms' batch lists and the front desk."""
    return [
        OURS,
        replace(OURS, name="Ours, 15 min hold", hold_minutes=15),
        replace(OURS, name="Ours, 10 min hold", hold_minutes=10),
        Policy("Doctolib-style batch of 5", kind="batch", batch_size=5, cycle_minutes=10),
        # The other reading of "the first 5 waitlisted patients every ~10 minutes": a job every 10 minutes sends
        # each newly freed slot to the first five on the list, once; nobody after them hears of it.
        Policy("Doctolib-style, one round of 5", kind="batch", batch_size=5, cycle_minutes=10, max_cycles=1),
        Policy("Epic-style batch of 6", kind="batch", batch_size=6, cycle_minutes=60),
        Policy("Front desk phoning", kind="desk"),
    ]


# -- the patients' answers ---------------------------------------------------------------------------------------

NIGHT = (time(21, 30), time(7, 30))  # patients read messages when they wake up
PHONE_PICKUP = 0.5  # share of calls a patient who answers messages picks up (no call back)
FIT_IN_WINDOW, FIT_ANY_TIME, FIT_OUTSIDE = 1.0, 0.8, 0.15


@dataclass(frozen=True)
class Answer:
    at: datetime
    yes: bool


def _draws(seed: int, patient: int, provider: int, start: datetime) -> tuple[float, float, float]:
    # A simulation, not security: a seeded stream, so every policy meets the same answers.
    rng = random.Random(f"{seed}:{patient}:{provider}:{start.isoformat()}")  # noqa: S311
    return rng.random(), rng.gauss(0.0, 1.0), rng.random()


def _awake(moment: datetime, zone: str) -> datetime:
    local = moment.astimezone(ZoneInfo(zone))
    night_start, night_end = NIGHT
    if local.time() >= night_start:
        wake = datetime.combine(local.date() + timedelta(days=1), night_end, tzinfo=local.tzinfo)
    elif local.time() < night_end:
        wake = datetime.combine(local.date(), night_end, tzinfo=local.tzinfo)
    else:
        return moment
    return wake.astimezone(UTC)


def acceptance(world: World, entry: SimEntry, provider: int, start: datetime, *, now: datetime,
               clinic_zone: str) -> float:  # fmt: skip
    """The chance the entry's patient takes this slot when asked at `now`: keenness x fit x notice."""
    if entry.original is not None and start >= world.appointments[entry.original].start:
        return 0.0  # not sooner than what they have
    windows = [Window.parse({"weekday": w, "start": s, "end": e}) for w, s, e in entry.windows]
    if not windows:
        fit = FIT_ANY_TIME
    else:
        sim_provider = world.providers[provider]
        end = start + timedelta(minutes=sim_provider.session_minutes)
        local_start, local_end = start.astimezone(ZoneInfo(clinic_zone)), end.astimezone(ZoneInfo(clinic_zone))
        inside = any(w.weekday == local_start.weekday() and w.start <= local_start.time() and local_end.time() <= w.end
                     for w in windows)  # fmt: skip
        fit = FIT_IN_WINDOW if inside else FIT_OUTSIDE
    hours = (start - now) / timedelta(hours=1)
    notice = 0.35 if hours < 4 else 0.7 if hours < 24 else 0.9 if hours < 72 else 1.0
    urgency = 1.0 + 0.1 * (entry.urgency - 1)
    return min(1.0, world.patients[entry.patient].keenness * fit * notice * urgency)


def answer(world: World, entry: SimEntry, provider: int, start: datetime, *, sent_at: datetime,
           clinic_zone: str, phone: bool = False) -> Answer | None:  # fmt: skip
    """The patient's answer to a message (or call) about this slot sent at `sent_at`, or None (never answers)."""
    traits = world.patients[entry.patient]
    u_answer, z_delay, u_yes = _draws(world.seed, entry.patient, provider, start)
    if u_answer >= traits.answers * (PHONE_PICKUP if phone else 1.0):
        return None
    if phone:
        at = sent_at + timedelta(minutes=2)
    else:
        delay = traits.reply_minutes * math.exp(traits.reply_spread * z_delay)
        at = _awake(sent_at, clinic_zone) + timedelta(minutes=min(delay, 24 * 60))
    chance = acceptance(world, entry, provider, start, now=at, clinic_zone=clinic_zone)
    return Answer(at=at, yes=u_yes < chance)


# -- a practice's own weeks -------------------------------------------------------------------------------------


def world_from_practice(uow: UnitOfWork, *, start: datetime, end: datetime, seed: int = 1,
                        clinic_id: uuid.UUID | None = None) -> World:  # fmt: skip
    """The practice's weeks [start, end) as they were, for replaying under other settings: its clinics, active
    providers and their weekly hours, the appointments booked before `start` that fall in the weeks (with when each
    was cancelled), and the waitlist entries that were open at some time in them (each with the patient's next
    booked appointment after `end`, the one they wanted to move up). Ids only: no names, no notes. The patients'
    answering habits are not recorded anywhere, so they are drawn (from `seed`) like the synthetic month's.
    With `clinic_id`, that clinic alone: its providers' hours there, its appointments and its waitlists."""
    from backend.scheduling.models import Appointment, AppointmentStatus
    from backend.waitlist.models import EntryStatus, WaitlistEntry

    rng = random.Random(seed)  # noqa: S311 - a simulation's stream, not security
    clinics = [c for c in uow.session.exec(select(Clinic).order_by(col(Clinic.created_at), col(Clinic.id)))
               if c.archived_at is None and (clinic_id is None or c.id == clinic_id)]  # fmt: skip
    clinic_index = {c.id: i for i, c in enumerate(clinics)}
    rules = list(uow.session.exec(select(AvailabilityRule).order_by(col(AvailabilityRule.weekday),
                                                                    col(AvailabilityRule.start_time))))  # fmt: skip
    providers: list[SimProvider] = []
    # One simulated provider per (provider, clinic) with hours there: a provider who works at two clinics keeps
    # the appointments and the waitlists of both (their hours at one clinic never overlap those at the other).
    provider_index: dict[tuple[uuid.UUID, uuid.UUID], int] = {}
    for provider in uow.session.exec(select(Provider).where(col(Provider.active)).order_by(col(Provider.id))):
        own = [r for r in rules if r.provider_id == provider.id and r.clinic_id in clinic_index]
        for clinic_id in sorted({r.clinic_id for r in own}, key=lambda c: clinic_index[c]):
            there = [r for r in own if r.clinic_id == clinic_id]
            provider_index[(provider.id, clinic_id)] = len(providers)
            providers.append(SimProvider(
                name=f"Provider {len(providers) + 1}", clinic=clinic_index[clinic_id],
                specialty=(provider.specialties or ["General"])[0],
                hours=tuple((r.weekday, r.start_time, r.end_time) for r in there),
                session_minutes=there[0].session_minutes, buffer_minutes=there[0].buffer_minutes,
            ))  # fmt: skip
    patient_index: dict[uuid.UUID, int] = {}

    def patient_of(patient_id: uuid.UUID) -> int:
        if patient_id not in patient_index:
            patient_index[patient_id] = len(patient_index)
        return patient_index[patient_id]

    appointments: list[SimAppointment] = []
    rows = uow.session.exec(
        select(Appointment)
        .where(Appointment.start_at >= start, Appointment.start_at < end, Appointment.created_at < start,
               col(Appointment.status) != AppointmentStatus.HELD, col(Appointment.patient_id).is_not(None))
        .order_by(col(Appointment.start_at), col(Appointment.id))
    )  # fmt: skip
    for row in rows:
        if (row.provider_id, row.clinic_id) not in provider_index or row.patient_id is None:
            continue
        cancelled = row.status in (AppointmentStatus.CANCELLED, AppointmentStatus.LATE_CANCELLED)
        if cancelled and (row.cancelled_at is None or row.cancelled_at < start):
            continue  # cancelled before the weeks began: never in them
        appointments.append(SimAppointment(
            provider=provider_index[(row.provider_id, row.clinic_id)], patient=patient_of(row.patient_id),
            start=row.start_at,
            booked_at=min(row.created_at, start - timedelta(minutes=1)),
            cancelled_at=row.cancelled_at if cancelled else None,
        ))  # fmt: skip
    entries: list[SimEntry] = []
    open_now = (EntryStatus.WAITING, EntryStatus.OFFERED)
    originals: dict[uuid.UUID, int | None] = {}  # patient -> index of their next appointment after the weeks
    for entry in uow.session.exec(
        select(WaitlistEntry).where(WaitlistEntry.created_at < end).order_by(col(WaitlistEntry.created_at))
    ):
        if entry.clinic_id not in clinic_index or (entry.status not in open_now and entry.updated_at < start):
            continue
        if entry.provider_id is not None and (entry.provider_id, entry.clinic_id) not in provider_index:
            continue
        if entry.patient_id not in originals:
            # Looked up once per patient: a patient on two waitlists moves up the same appointment.
            later = uow.session.exec(
                select(Appointment)
                .where(Appointment.patient_id == entry.patient_id, Appointment.start_at >= end,
                       Appointment.status == AppointmentStatus.BOOKED)
                .order_by(col(Appointment.start_at))
            ).first()  # fmt: skip
            originals[entry.patient_id] = None
            if later is not None and (later.provider_id, later.clinic_id) in provider_index:
                originals[entry.patient_id] = len(appointments)
                booked_at = min(later.created_at, start - timedelta(minutes=1))
                appointments.append(SimAppointment(provider=provider_index[(later.provider_id, later.clinic_id)],
                                                   patient=patient_of(entry.patient_id), start=later.start_at,
                                                   booked_at=booked_at))  # fmt: skip
        original = originals[entry.patient_id]
        windows = []
        for raw in entry.preferred_windows or []:
            try:
                window = Window.parse(raw)
            except (KeyError, TypeError, ValueError):
                continue
            windows.append((window.weekday, window.start.strftime("%H:%M"), window.end.strftime("%H:%M")))
        entries.append(SimEntry(
            patient=patient_of(entry.patient_id), clinic=clinic_index[entry.clinic_id],
            joined_at=min(entry.created_at, end - timedelta(minutes=1)),
            provider=provider_index[(entry.provider_id, entry.clinic_id)] if entry.provider_id is not None else None,
            windows=tuple(windows), urgency=entry.urgency, earliest_date=entry.earliest_date,
            latest_date=entry.latest_date, original=original,
        ))  # fmt: skip
    patients = tuple(
        SimPatient(answers=rng.uniform(0.7, 0.97), reply_minutes=rng.uniform(2, 15), keenness=rng.uniform(0.3, 0.8))
        for _ in range(len(patient_index))
    )
    return World(
        start=start, end=end, seed=seed, clinics=tuple(SimClinic(f"Clinic {i + 1}", c.timezone) for i, c in
                                                       enumerate(clinics)),
        providers=tuple(providers), patients=patients, appointments=tuple(appointments), entries=tuple(entries),
    )  # fmt: skip


def shift_world(world: World, weeks: int) -> World:
    """The same weeks `weeks` whole weeks later on each clinic's wall clock: every weekday and local time stays
    what it was (a Tuesday 09:00 session is still one after a clock change in between). Past weeks are replayed
    moved past the present: the booking rules look for session starts after the real present."""

    def move(moment: datetime, zone: str) -> datetime:
        local = moment.astimezone(ZoneInfo(zone)).replace(tzinfo=None) + timedelta(weeks=weeks)
        return local.replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)

    def move_date(day: date | None) -> date | None:
        return None if day is None else day + timedelta(weeks=weeks)

    first = world.clinics[0].timezone if world.clinics else "UTC"
    appointments = tuple(
        replace(a, start=move(a.start, zone), booked_at=move(a.booked_at, zone),
                cancelled_at=None if a.cancelled_at is None else move(a.cancelled_at, zone))
        for a in world.appointments
        for zone in [world.clinics[world.providers[a.provider].clinic].timezone]
    )  # fmt: skip
    entries = tuple(
        replace(e, joined_at=move(e.joined_at, world.clinics[e.clinic].timezone),
                earliest_date=move_date(e.earliest_date), latest_date=move_date(e.latest_date))
        for e in world.entries
    )  # fmt: skip
    return replace(world, start=move(world.start, first), end=move(world.end, first), appointments=appointments,
                   entries=entries)  # fmt: skip


def policy_from_settings(name: str, policy: EffectivePolicy) -> Policy:
    """Our policy with a clinic's effective settings (hold, cutoff, quiet hours, ranking weights)."""
    quiet = None
    if policy.quiet_hours_start is not None and policy.quiet_hours_end is not None:
        quiet = (policy.quiet_hours_start, policy.quiet_hours_end)
    weights = policy.weights
    return Policy(
        name=name, kind="ours", hold_minutes=int(policy.offer_hold / timedelta(minutes=1)),
        cutoff_minutes=int(policy.cutoff / timedelta(minutes=1)), quiet_hours=quiet,
        weights=(weights.urgency, weights.wait, weights.fit, weights.continuity),
    )  # fmt: skip


# -- figures -----------------------------------------------------------------------------------------------------


@dataclass
class SlotTrack:
    provider: int
    start: datetime
    freed_at: datetime
    clinic: int
    cancelled_by: int
    filled_at: datetime | None = None
    filled_by: int | None = None  # entry index
    contacted: list[int] = field(default_factory=list)  # entry indexes, in order
    cycles: int = 0  # batch: cycles run
    live_at_cutoff: bool = False


@dataclass(frozen=True)
class Figures:
    policy: str
    freed: int
    filled: int
    fill_rate: float  # 0..1
    median_minutes_to_fill: float | None
    p90_minutes_to_fill: float | None
    offers: int
    offers_per_fill: float | None
    messages: int
    messages_per_fill: float | None
    acceptance: float | None  # filled / offers
    median_days_sooner: float | None
    median_wait_days_urgent: float | None  # joined -> seen, urgency 3-4
    median_wait_days_routine: float | None  # urgency 1-2
    lost_to_hold: int
    max_live_offers_per_patient: int

    def row(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _median(values: Sequence[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def _p90(values: Sequence[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)], 1)


def _figures(world: World, policy: Policy, tracks: Sequence[SlotTrack], offers: int, messages: int,
             max_live: int) -> Figures:  # fmt: skip
    filled = [t for t in tracks if t.filled_at is not None and t.filled_by is not None]
    minutes = [(t.filled_at - t.freed_at) / timedelta(minutes=1) for t in filled if t.filled_at]
    sooner: list[float] = []
    urgent: list[float] = []
    routine: list[float] = []
    for t in filled:
        entry = world.entries[t.filled_by]  # type: ignore[index]
        if entry.original is not None:
            sooner.append((world.appointments[entry.original].start - t.start) / timedelta(days=1))
        (urgent if entry.urgency >= 3 else routine).append((t.start - entry.joined_at) / timedelta(days=1))
    n = len(filled)
    return Figures(
        policy=policy.name,
        freed=len(tracks),
        filled=n,
        fill_rate=round(n / len(tracks), 3) if tracks else 0.0,
        median_minutes_to_fill=_median(minutes),
        p90_minutes_to_fill=_p90(minutes),
        offers=offers,
        offers_per_fill=round(offers / n, 2) if n else None,
        messages=messages,
        messages_per_fill=round(messages / n, 2) if n else None,
        acceptance=round(n / offers, 3) if offers else None,
        median_days_sooner=_median(sooner),
        median_wait_days_urgent=_median(urgent),
        median_wait_days_routine=_median(routine),
        lost_to_hold=sum(1 for t in tracks if t.filled_at is None and t.live_at_cutoff),
        max_live_offers_per_patient=max_live,
    )


# -- the database ------------------------------------------------------------------------------------------------


class _SimUnitOfWork(UnitOfWork):
    """A unit of work that drops its after-commit work (events to Redis, Celery tasks): the simulator runs the
    cascade itself, by direct call, on its own database."""

    def after_commit(self, hook: Callable[[], None]) -> None:
        return None


@dataclass
class _Clock:
    now: datetime

    def read(self) -> datetime:
        return self.now


@dataclass
class Loaded:
    """The ids the world got in a database (the same in every copy of it)."""

    tenant_id: uuid.UUID
    clinics: list[uuid.UUID]
    providers: list[uuid.UUID]
    patients: list[uuid.UUID]
    appointments: list[uuid.UUID | None]
    entries: dict[int, uuid.UUID] = field(default_factory=dict)


def migrate_sqlite(path: Path) -> str:
    """Create the schema in a new SQLite file through the migrations; return its URL."""
    from alembic import command
    from alembic.config import Config

    url = f"sqlite:///{path}"
    cfg = Config(str(Path(__file__).resolve().parents[2] / "alembic.ini"))
    cfg.set_main_option("sqlalchemy.url", url)
    command.upgrade(cfg, "head")
    return url


@functools.cache
def _migrated_image() -> bytes:
    """The bytes of an empty migrated SQLite database (migrated once per process: it takes seconds)."""
    with tempfile.TemporaryDirectory(prefix="waitwell-sim-") as folder:
        path = Path(folder) / "schema.db"
        migrate_sqlite(path)
        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            image = conn.serialize()
        conn.close()
        return image


def _new_sqlite(path: Path) -> str:
    """A migrated SQLite file at `path` (a copy of the process's migrated image); return its URL."""
    memory = sqlite3.connect(":memory:")
    target = sqlite3.connect(path)
    try:
        memory.deserialize(_migrated_image())
        memory.backup(target)
    finally:
        target.close()
        memory.close()
    return f"sqlite:///{path}"


def _unit(actor: Actor, engine: Engine) -> _SimUnitOfWork:
    return _SimUnitOfWork(actor, engine=engine)


def load_world(world: World, engine: Engine) -> Loaded:
    """Write the practice as it was when the world starts: clinics, providers, patients, the bookings (made at
    their booking time through book_appointment) and the entries that joined before the start (join_waitlist)."""
    tenant = Tenant(name="Simulated practice", slug=f"sim-{world.seed}")
    with UnitOfWork(system=True, engine=engine) as uow:
        uow.session.add(tenant)
        uow.commit()
    system = Actor.system(tenant.id)
    loaded = Loaded(tenant.id, [], [], [], [])
    with _unit(system, engine) as uow:
        for clinic in world.clinics:
            row = Clinic(tenant_id=tenant.id, name=clinic.name, timezone=clinic.timezone)
            uow.session.add(row)
            loaded.clinics.append(row.id)
        uow.flush()
        uow.session.add(BookingPolicy(tenant_id=tenant.id, min_notice_minutes=0, horizon_days=180))
        for provider in world.providers:
            row_p = Provider(tenant_id=tenant.id, full_name=provider.name, title="MD", specialties=[provider.specialty],
                             languages=["English"], modalities=["in_person"])  # fmt: skip
            uow.session.add(row_p)
            loaded.providers.append(row_p.id)
            uow.flush()
            clinic_id = loaded.clinics[provider.clinic]
            uow.session.add(ProviderClinic(tenant_id=tenant.id, provider_id=row_p.id, clinic_id=clinic_id))
            for weekday, begin, end in provider.hours:
                uow.session.add(AvailabilityRule(
                    tenant_id=tenant.id, provider_id=row_p.id, clinic_id=clinic_id, weekday=weekday, start_time=begin,
                    end_time=end, session_minutes=provider.session_minutes, buffer_minutes=provider.buffer_minutes,
                ))  # fmt: skip
        for i, _ in enumerate(world.patients):
            row_pt = Patient(tenant_id=tenant.id, full_name=f"Simulated patient {i:05d}")
            uow.session.add(row_pt)
            loaded.patients.append(row_pt.id)
        uow.flush()
        uow.commit()
    clock = _Clock(world.start)
    joins = sorted((e.joined_at, i) for i, e in enumerate(world.entries) if e.joined_at < world.start)
    bookings = sorted((a.booked_at, i) for i, a in enumerate(world.appointments))
    loaded.appointments = [None] * len(world.appointments)
    with virtual_clock(clock.read):
        for moment, kind, i in sorted([(m, "book", i) for m, i in bookings] + [(m, "join", i) for m, i in joins]):
            clock.now = moment
            if kind == "book":
                appointment = world.appointments[i]
                patient = Actor(tenant_id=tenant.id, role=Role.PATIENT, patient_id=loaded.patients[appointment.patient])
                try:
                    with _unit(patient, engine) as uow:
                        result = book_appointment(patient, uow, provider_id=loaded.providers[appointment.provider],
                                                  start=appointment.start)  # fmt: skip
                        uow.commit()
                    loaded.appointments[i] = result.appointment.id
                except DomainError:
                    pass  # a world may ask for a booking the rules refuse (the patient busy then): left out
            else:
                _join(world, loaded, system, engine, i)
    return loaded


def _join(world: World, loaded: Loaded, system: Actor, engine: Engine, i: int) -> None:
    entry = world.entries[i]
    request = JoinRequest(
        clinic_id=loaded.clinics[entry.clinic],
        provider_id=loaded.providers[entry.provider] if entry.provider is not None else None,
        windows=[{"weekday": w, "start": s, "end": e} for w, s, e in entry.windows],
        earliest_date=entry.earliest_date,
        latest_date=entry.latest_date,
        urgency=entry.urgency,
        patient_id=loaded.patients[entry.patient],
    )
    try:
        with _unit(system, engine) as uow:
            row = join_waitlist(system, uow, request)
            uow.commit()
        loaded.entries[i] = row.id
    except DomainError:
        pass  # refused by the rules (e.g. max entries per patient): the patient is not on the list


def _set_policy(engine: Engine, loaded: Loaded, policy: Policy) -> None:
    urgency, wait, fit, continuity = policy.weights
    row = WaitlistPolicy(
        tenant_id=loaded.tenant_id, offer_hold_minutes=policy.hold_minutes,
        cutoff_minutes_before_slot=policy.cutoff_minutes, urgency_weight=urgency, wait_weight=wait, fit_weight=fit,
        continuity_weight=continuity, max_active_per_provider=10_000, max_active_per_clinic=100_000,
        entry_ttl_days=365,
    )  # fmt: skip
    # No quiet hours: NULL written as NULL (None through the ORM would let the column default in).
    row.quiet_hours_start, row.quiet_hours_end = policy.quiet_hours or (sa.null(), sa.null())  # type: ignore[assignment]
    with _unit(Actor.system(loaded.tenant_id), engine) as uow:
        uow.session.add(row)
        uow.commit()


# -- the run -----------------------------------------------------------------------------------------------------


class InvariantBroken(AssertionError):
    """A patient was offered two slots at once."""


@dataclass
class _Run:
    world: World
    policy: Policy
    engine: Engine
    loaded: Loaded
    clock: _Clock
    events: list[tuple[datetime, int, str, tuple[Any, ...]]] = field(default_factory=list)
    seq: Iterator[int] = field(default_factory=itertools.count)
    tracks: dict[tuple[int, datetime], SlotTrack] = field(default_factory=dict)
    joined: dict[int, datetime] = field(default_factory=dict)  # entry -> when it joined (in the run)
    booked_entries: set[int] = field(default_factory=set)
    booked_patients: dict[int, list[tuple[datetime, datetime]]] = field(default_factory=dict)
    live_offer: dict[int, uuid.UUID] = field(default_factory=dict)  # patient -> their live offer (ours)
    offer_slot: dict[uuid.UUID, tuple[tuple[int, datetime], int]] = field(default_factory=dict)
    desk_free: dict[int, datetime] = field(default_factory=dict)
    offers: int = 0
    messages: int = 0
    max_live: int = 0

    @property
    def system(self) -> Actor:
        return Actor.system(self.loaded.tenant_id)

    def patient(self, index: int) -> Actor:
        return Actor(tenant_id=self.loaded.tenant_id, role=Role.PATIENT, patient_id=self.loaded.patients[index])

    def at(self, moment: datetime, kind: str, *args: Any) -> None:
        heapq.heappush(self.events, (moment, next(self.seq), kind, args))

    def zone(self, clinic: int) -> str:
        return self.world.clinics[clinic].timezone

    def entry_of(self, entry_id: uuid.UUID) -> int:
        for i, known in self.loaded.entries.items():
            if known == entry_id:
                return i
        raise KeyError(entry_id)

    # -- events --

    def run(self, progress: Callable[[float], None] | None) -> Figures:
        for i, entry in enumerate(self.world.entries):
            if entry.joined_at < self.world.start:
                if i in self.loaded.entries:
                    self.joined[i] = entry.joined_at
            elif entry.joined_at < self.world.end:
                self.at(entry.joined_at, "join", i)
        for i, appointment in enumerate(self.world.appointments):
            if appointment.cancelled_at is not None and self.loaded.appointments[i] is not None:
                if self.world.start <= appointment.cancelled_at < min(appointment.start, self.world.end):
                    self.at(appointment.cancelled_at, "cancel", i)
        span = (self.world.end - self.world.start) / timedelta(seconds=1)
        last_report = -1
        with virtual_clock(self.clock.read):
            while self.events:
                moment, _, kind, args = heapq.heappop(self.events)
                if moment >= self.world.end and kind in ("join", "cancel"):
                    continue
                self.clock.now = max(self.clock.now, moment)
                getattr(self, f"_on_{kind}")(*args)
                done = int(100 * min(1.0, (moment - self.world.start) / timedelta(seconds=1) / span))
                if progress is not None and done != last_report:
                    last_report = done
                    progress(done / 100)
        return _figures(self.world, self.policy, list(self.tracks.values()), self.offers, self.messages,
                        self.max_live)  # fmt: skip

    def _on_join(self, i: int) -> None:
        _join(self.world, self.loaded, self.system, self.engine, i)
        if i in self.loaded.entries:
            self.joined[i] = self.clock.now

    def _on_cancel(self, i: int) -> None:
        appointment = self.world.appointments[i]
        appointment_id = self.loaded.appointments[i]
        if appointment_id is None:
            return  # never booked (the world asked for a booking the rules refused)
        actor = self.patient(appointment.patient)
        try:
            with _unit(actor, self.engine) as uow:
                cancel_appointment(actor, uow, appointment_id, reason="simulated")
                uow.commit()
        except DomainError:
            return  # already moved (the patient took an earlier slot) or started
        key = (appointment.provider, appointment.start)
        self.tracks[key] = SlotTrack(provider=appointment.provider, start=appointment.start,
                                     freed_at=self.clock.now, clinic=self.world.providers[appointment.provider].clinic,
                                     cancelled_by=appointment.patient)  # fmt: skip
        if self.policy.kind == "ours":
            self._offer(key)
        elif self.policy.kind == "batch":
            self.at(self.clock.now, "cycle", key)
        else:
            self.at(self.clock.now, "call", key)

    def _cutoff(self, track: SlotTrack) -> datetime:
        return track.start - timedelta(minutes=self.policy.cutoff_minutes)

    def _check_cutoff(self, key: tuple[int, datetime]) -> None:
        """At the cutoff: note whether the slot, still unfilled, had an offer held then (ours)."""
        track = self.tracks[key]
        if track.filled_at is None and any(slot == key for slot, _ in self.offer_slot.values()):
            track.live_at_cutoff = True

    # ours: the product's engine

    def _offer(self, key: tuple[int, datetime]) -> None:
        track = self.tracks[key]
        if track.filled_at is not None:
            return
        with _unit(self.system, self.engine) as uow:
            offer = offer_freed_slot(self.system, uow, provider_id=self.loaded.providers[track.provider],
                                     start=track.start)  # fmt: skip
            uow.commit()
        if offer is None:
            return
        entry = self.entry_of(offer.entry_id)
        patient = self.world.entries[entry].patient
        if patient in self.live_offer:
            raise InvariantBroken(f"patient {patient} was offered a second slot while an offer was live")
        self.live_offer[patient] = offer.id
        self.max_live = max(self.max_live, 1)
        self.offer_slot[offer.id] = (key, entry)
        if not track.contacted:
            self.at(self._cutoff(track), "cutoff", key)
        track.contacted.append(entry)
        self.offers += 1
        self.messages += 1
        self.at(offer.expires_at, "expire")
        reply = answer(self.world, self.world.entries[entry], track.provider, track.start, sent_at=self.clock.now,
                       clinic_zone=self.zone(track.clinic))  # fmt: skip
        if reply is not None:
            self.at(reply.at, "reply", offer.id, reply.yes)

    def _close(self, offer_id: uuid.UUID) -> tuple[int, datetime] | None:
        found = self.offer_slot.pop(offer_id, None)
        if found is None:
            return None
        key, entry = found
        self.live_offer.pop(self.world.entries[entry].patient, None)
        return key

    def _on_cutoff(self, key: tuple[int, datetime]) -> None:
        self._check_cutoff(key)

    def _on_expire(self) -> None:
        with _unit(self.system, self.engine) as uow:
            expired = expire_due_offers(self.system, uow, now=self.clock.now)
            uow.commit()
        # Close them all before any cascade: a cascade may rightly offer a slot to a patient whose offer expired.
        freed = [key for key in (self._close(offer_id) for offer_id in expired) if key is not None]
        for key in freed:
            self._offer(key)

    def _on_reply(self, offer_id: uuid.UUID, yes: bool) -> None:
        if offer_id not in self.offer_slot:
            return  # answered after the offer closed: the service would refuse it
        key, entry = self.offer_slot[offer_id]
        patient = self.world.entries[entry].patient
        actor = self.patient(patient)
        try:
            with _unit(actor, self.engine) as uow:
                if yes:
                    accept_offer(actor, uow, offer_id)
                else:
                    decline_offer(actor, uow, offer_id)
                uow.commit()
        except DomainError:
            return  # expired at this very moment: the expiry event closes it
        self._close(offer_id)
        if yes:
            self._filled(key, entry)
        else:
            self._offer(key)

    def _filled(self, key: tuple[int, datetime], entry: int) -> None:
        track = self.tracks[key]
        track.filled_at, track.filled_by = self.clock.now, entry
        self.booked_entries.add(entry)
        # Their later appointment is given up (outside the simulated weeks: not offered again here).
        original = self.world.entries[entry].original
        if original is not None and self.loaded.appointments[original] is not None:
            actor = self.patient(self.world.entries[entry].patient)
            try:
                with _unit(actor, self.engine) as uow:
                    cancel_appointment(actor, uow, self.loaded.appointments[original], reason="moved up")  # type: ignore[arg-type]
                    uow.commit()
            except DomainError:
                pass

    # the other platforms' lists and the front desk (a policy layer over the same services)

    def _list_candidates(self, key: tuple[int, datetime]) -> list[int]:
        """Entries matching the slot on a list without preferred times, in order of joining."""
        track = self.tracks[key]
        provider = self.world.providers[track.provider]
        slot = OpenSlot(start=track.start, end=track.start + timedelta(minutes=provider.session_minutes),
                        provider_id=self.loaded.providers[track.provider], clinic_id=self.loaded.clinics[track.clinic],
                        modality="in_person")  # fmt: skip
        found = []
        for i, since in sorted(self.joined.items(), key=lambda kv: (kv[1], kv[0])):
            entry = self.world.entries[i]
            if i in self.booked_entries or i in track.contacted or entry.patient == track.cancelled_by:
                continue
            candidate = Candidate(
                entry_id=self.loaded.entries[i], patient_id=self.loaded.patients[entry.patient], urgency=entry.urgency,
                waiting_since=since, timezone=self.zone(entry.clinic),
                provider_id=self.loaded.providers[entry.provider] if entry.provider is not None else None,
                clinic_id=self.loaded.clinics[entry.clinic], earliest_date=entry.earliest_date,
                latest_date=entry.latest_date,
            )  # fmt: skip
            if not ineligibility(candidate, slot):
                found.append(i)
        return found

    def _on_cycle(self, key: tuple[int, datetime]) -> None:
        track = self.tracks[key]
        if track.filled_at is not None or self.clock.now >= self._cutoff(track):
            return
        quiet_end = self._after_quiet_hours(self.clock.now, track.clinic)
        if quiet_end > self.clock.now:
            self.at(quiet_end, "cycle", key)  # no messages at night: the next cycle when the quiet hours end
            return
        if self.policy.max_cycles is not None and track.cycles >= self.policy.max_cycles:
            return
        track.cycles += 1
        batch = self._list_candidates(key)[: self.policy.batch_size]
        for entry in batch:
            track.contacted.append(entry)
            self.offers += 1
            self.messages += 1
            reply = answer(self.world, self.world.entries[entry], track.provider, track.start,
                           sent_at=self.clock.now, clinic_zone=self.zone(track.clinic))  # fmt: skip
            if reply is not None and reply.yes:
                self.at(reply.at, "book", key, entry)
        if batch:
            self.at(self.clock.now + timedelta(minutes=self.policy.cycle_minutes), "cycle", key)

    def _after_quiet_hours(self, moment: datetime, clinic: int) -> datetime:
        """`moment`, or the end of the quiet hours it falls in (at the clinic)."""
        if self.policy.quiet_hours is None:
            return moment
        begin, end = self.policy.quiet_hours
        local = moment.astimezone(ZoneInfo(self.zone(clinic)))
        inside = begin <= local.time() < end if begin < end else local.time() >= begin or local.time() < end
        if not inside:
            return moment
        wake = datetime.combine(local.date(), end, tzinfo=local.tzinfo)
        if wake <= local:
            wake = datetime.combine(local.date() + timedelta(days=1), end, tzinfo=local.tzinfo)
        return wake.astimezone(UTC)

    def _on_book(self, key: tuple[int, datetime], entry: int) -> None:
        track = self.tracks[key]
        if track.filled_at is not None or self.clock.now >= track.start:
            if track.filled_at is not None:
                self.messages += 1  # "sorry, someone was quicker"
            return
        actor = self.patient(self.world.entries[entry].patient)
        try:
            with _unit(actor, self.engine) as uow:
                book_appointment(actor, uow, provider_id=self.loaded.providers[track.provider], start=track.start)
                uow.commit()
        except DomainError:
            return
        self._filled(key, entry)

    def _working(self, moment: datetime, clinic: int) -> datetime:
        """The first desk minute at or after `moment` (Monday to Friday, 08:30-17:00 at the clinic)."""
        zone = ZoneInfo(self.zone(clinic))
        local = moment.astimezone(zone)
        for _ in range(8):
            opens = datetime.combine(local.date(), time(8, 30), tzinfo=zone)
            closes = datetime.combine(local.date(), time(17, 0), tzinfo=zone)
            if local.weekday() < 5 and local < closes:
                return max(local, opens).astimezone(UTC)
            local = datetime.combine(local.date() + timedelta(days=1), time(0, 0), tzinfo=zone)
        return moment

    def _on_call(self, key: tuple[int, datetime]) -> None:
        track = self.tracks[key]
        if track.filled_at is not None or self.clock.now >= self._cutoff(track):
            return
        ready = self._working(max(self.clock.now, self.desk_free.get(track.clinic, self.clock.now)), track.clinic)
        if ready > self.clock.now:
            self.at(ready, "call", key)
            return
        candidates = self._list_candidates(key)
        if not candidates:
            return
        entry = candidates[0]
        track.contacted.append(entry)
        self.offers += 1
        self.messages += 1
        call_ends = self.clock.now + timedelta(minutes=self.policy.call_minutes)
        self.desk_free[track.clinic] = call_ends
        reply = answer(self.world, self.world.entries[entry], track.provider, track.start, sent_at=self.clock.now,
                       clinic_zone=self.zone(track.clinic), phone=True)  # fmt: skip
        if reply is not None and reply.yes:
            self.at(reply.at, "book", key, entry)
        else:
            self.at(call_ends, "call", key)


def run_policy(world: World, policy: Policy, engine: Engine, loaded: Loaded,
               progress: Callable[[float], None] | None = None) -> Figures:  # fmt: skip
    """Replay the world under `policy` on a database that holds it as loaded by load_world (it is changed)."""
    _set_policy(engine, loaded, policy)
    run = _Run(world, policy, engine, replace(loaded, entries=dict(loaded.entries)), _Clock(world.start))
    figures = run.run(progress)
    if policy.kind == "ours":
        check_one_offer_at_a_time(engine, loaded)
    return figures


def check_one_offer_at_a_time(engine: Engine, loaded: Loaded) -> None:
    """Raise InvariantBroken if the database shows a patient with two offers live at the same time."""
    from backend.waitlist.models import WaitlistEntry

    with UnitOfWork(Actor.system(loaded.tenant_id), engine=engine) as uow:
        rows = uow.session.exec(
            select(WaitlistEntry.patient_id, WaitlistOffer.created_at, WaitlistOffer.responded_at,
                   WaitlistOffer.expires_at)
            .join(WaitlistEntry, col(WaitlistEntry.id) == WaitlistOffer.entry_id)
            .order_by(col(WaitlistEntry.patient_id), col(WaitlistOffer.created_at))
        ).all()  # fmt: skip
    last_end: dict[uuid.UUID, datetime] = {}
    for patient_id, created, responded, expires in rows:
        if patient_id in last_end and created < last_end[patient_id]:
            raise InvariantBroken("a patient had two offers live at once")
        last_end[patient_id] = responded or expires


# -- databases ---------------------------------------------------------------------------------------------------


@contextmanager
def sqlite_copies(world: World) -> Iterator[Callable[[], tuple[Engine, Loaded]]]:
    """Load the world once into a migrated SQLite file in a temporary directory; yield a function that returns a
    fresh copy of it (an engine and the ids) for each run. Everything is removed at the end."""
    folder = Path(tempfile.mkdtemp(prefix="waitwell-sim-"))
    engines: list[Engine] = []
    try:
        template = folder / "template.db"
        engine = make_engine(_new_sqlite(template))
        engines.append(engine)
        loaded = load_world(world, engine)
        engine.dispose()
        copies = itertools.count()

        def fresh() -> tuple[Engine, Loaded]:
            target = folder / f"run{next(copies)}.db"
            source, dest = sqlite3.connect(template), sqlite3.connect(target)
            try:
                source.backup(dest)
            finally:
                dest.close()
                source.close()
            copy = make_engine(f"sqlite:///{target}")
            engines.append(copy)
            return copy, replace(loaded, entries=dict(loaded.entries))

        yield fresh
    finally:
        for made in engines:
            made.dispose()
        shutil.rmtree(folder, ignore_errors=True)


def simulate(
    world: World,
    policies: Sequence[Policy] | None = None,
    *,
    databases: Callable[[World], Any] | None = None,
    progress: Callable[[float], None] | None = None,
) -> list[Figures]:
    """Replay `world` under each policy (default_policies() by default), each on its own copy of the world's
    database, and return one Figures per policy. `databases(world)` is a context manager yielding a function
    that returns (engine, Loaded) for a fresh copy (default: sqlite_copies); `progress` gets 0..1."""
    chosen = list(policies) if policies is not None else default_policies()
    results: list[Figures] = []
    with (databases or sqlite_copies)(world) as fresh:
        for n, policy in enumerate(chosen):
            engine, loaded = fresh()

            def step(share: float, n: int = n) -> None:
                if progress is not None:
                    progress((n + share) / len(chosen))

            results.append(run_policy(world, policy, engine, loaded, step))
            engine.dispose()
    return results


__all__ = [
    "OURS",
    "Answer",
    "Figures",
    "InvariantBroken",
    "Loaded",
    "Policy",
    "SimAppointment",
    "SimClinic",
    "SimEntry",
    "SimPatient",
    "SimProvider",
    "World",
    "acceptance",
    "answer",
    "check_one_offer_at_a_time",
    "default_policies",
    "load_world",
    "migrate_sqlite",
    "policy_from_settings",
    "run_policy",
    "shift_world",
    "simulate",
    "sqlite_copies",
    "world_from_practice",
]
