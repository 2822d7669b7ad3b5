"""Demo data: two practices, so tenant isolation can be seen.

    python -m backend.seed --demo                 # create the demo practices (skips any that exist)
    python -m backend.seed --demo --if-empty      # ... only when the database has no tenant at all
    python -m backend.seed --print-logins [--url http://localhost:3000]

Everything is fixed (names, emails, weekly hours) except times, which are relative to "now": appointments
sit on the providers' weekly availability in each clinic's own time zone, stored as aware UTC datetimes.
All people, emails (.example) and phone numbers (555-01xx) are fictional.

History for the admin's Insights page (`_history`): the HISTORY_WEEKS weeks before this one hold completed visits
and no-shows, and one cancellation per provider a week whose slot goes through the waitlist as the services would
have done it (offers declined, expired or accepted, the released holds, a direct booking), and two dead-lettered
messages at Harbor. Deterministic: the same outcomes every time, only the dates follow today.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine
from sqlmodel import select

from backend.audit.models import AuditEvent
from backend.crypto import encrypt_text
from backend.db import UnitOfWork
from backend.identity.models import Membership, Patient, Provider, ProviderClinic, User
from backend.identity.security import hash_password
from backend.notifications.models import (
    Channel,
    Notification,
    NotificationDelivery,
    NotificationPreference,
    NotificationStatus,
)
from backend.scheduling.models import Appointment, AppointmentStatus, AvailabilityRule
from backend.tenancy.context import Actor, Role
from backend.tenancy.models import Clinic, Tenant
from backend.waitlist.models import (
    EntryStatus,
    OfferStatus,
    WaitlistEntry,
    WaitlistOffer,
    WaitlistPolicy,
    target_key,
)
from backend.waitlist.ranking import Candidate, OpenSlot, Weights, score

DEMO_PASSWORD = "demo-pass-2026"  # noqa: S105 - the published password of the fictional demo logins
# Admins must use MFA: the demo admins are enrolled with this published TOTP secret (add it to an authenticator
# app, or `python -c "import pyotp; print(pyotp.TOTP('<secret>').now())"`). Any other account sets up its own.
DEMO_ADMIN_TOTP_SECRET = "WAITWELLDEMOADMINTOTPSECRETKEYZZ"  # noqa: S105 - published, for the fictional demo admins

SESSION_MINUTES = 50
BUFFER_MINUTES = 10
UPCOMING_PER_PRACTICE = 10
PAST_PER_PRACTICE = 4
UPCOMING_DAYS = 21
PAST_DAYS = 14
WEEKDAYS = (0, 1, 2, 3, 4)  # Monday .. Friday
# Insights history: the weeks before this one (the Insights page shows this week and the 11 before), and per
# provider and week, the completed or missed visits.
HISTORY_WEEKS = 11
HISTORY_VISITS = 3


# --- the demo practices, declared --------------------------------------------------------------------


@dataclass(frozen=True)
class ClinicSpec:
    key: str
    name: str
    timezone: str
    address: str
    phone: str


@dataclass(frozen=True)
class Block:
    """Weekly hours of one provider at one clinic, in the clinic's local wall-clock time."""

    clinic: str
    weekdays: tuple[int, ...]
    start: str
    end: str
    modality: str = "in_person"


@dataclass(frozen=True)
class ProviderSpec:
    full_name: str
    title: str
    kind: str
    email: str
    specialties: tuple[str, ...]
    languages: tuple[str, ...]
    modalities: tuple[str, ...]
    bio: str
    hours: tuple[Block, ...]


@dataclass(frozen=True)
class PatientSpec:
    full_name: str
    email: str
    phone: str
    date_of_birth: date
    home_clinic: str
    locale: str = "en"
    sms_opt_in: bool = False


@dataclass(frozen=True)
class WaitSpec:
    """A waitlist entry: patient (by email), clinic, optional provider (by email), windows, urgency."""

    patient: str
    clinic: str
    provider: str | None
    specialty: str | None
    modality: str | None
    windows: tuple[tuple[int, str, str], ...]
    urgency: int
    reason: str
    days_waiting: int


@dataclass(frozen=True)
class PracticeSpec:
    name: str
    slug: str
    admin_name: str
    admin_email: str
    clinics: tuple[ClinicSpec, ...]
    providers: tuple[ProviderSpec, ...]
    patients: tuple[PatientSpec, ...]
    waitlist: tuple[WaitSpec, ...] = ()


HARBOR = PracticeSpec(
    name="Harbor Mental Health",
    slug="harbor",
    admin_name="Morgan Blake",
    admin_email="admin@harbor.example",
    clinics=(
        ClinicSpec(
            "downtown", "Harbor Downtown", "America/New_York", "120 Water Street, New York, NY", "+1 212 555 0100"
        ),
        ClinicSpec("westside", "Harbor Westside", "America/Chicago", "45 Lake Avenue, Chicago, IL", "+1 312 555 0100"),
    ),
    providers=(
        ProviderSpec(
            full_name="Dr. Elena Rivera",
            title="MD",
            kind="doctor",
            email="dr.rivera@harbor.example",
            specialties=("Psychiatry", "Depression"),
            languages=("English", "Spanish"),
            modalities=("in_person", "telehealth"),
            bio="Psychiatrist focused on mood disorders and medication management.",
            hours=(
                Block("downtown", WEEKDAYS, "09:00", "13:00", "in_person"),
                Block("downtown", WEEKDAYS, "14:00", "17:00", "telehealth"),
            ),
        ),
        ProviderSpec(
            full_name="Dr. Wei Chen",
            title="PsyD",
            kind="therapist",
            email="dr.chen@harbor.example",
            specialties=("Anxiety", "Trauma"),
            languages=("English", "Mandarin"),
            modalities=("in_person",),
            bio="Clinical psychologist; CBT and EMDR for anxiety and trauma.",
            hours=(
                Block("downtown", (0, 2, 4), "09:00", "17:00"),
                Block("westside", (1, 3), "09:00", "17:00"),
            ),
        ),
        ProviderSpec(
            full_name="Jordan Brooks",
            title="LCSW",
            kind="therapist",
            email="jordan.brooks@harbor.example",
            specialties=("Couples therapy", "Depression"),
            languages=("English",),
            modalities=("in_person", "telehealth"),
            bio="Clinical social worker seeing couples and adults.",
            hours=(
                Block("westside", (0, 1, 2, 3), "09:00", "17:00", "in_person"),
                Block("westside", (4,), "09:00", "15:00", "telehealth"),
            ),
        ),
    ),
    patients=(
        PatientSpec("Alice Morgan", "alice@harbor.example", "+1 212 555 0111", date(1988, 3, 14), "downtown"),
        PatientSpec(
            "Ben Okoro", "ben@harbor.example", "+1 212 555 0112", date(1979, 11, 2), "downtown", sms_opt_in=True
        ),
        PatientSpec("Chloe Martinez", "chloe@harbor.example", "+1 212 555 0113", date(1995, 6, 21), "downtown", "es"),
        PatientSpec("David Kim", "david@harbor.example", "+1 312 555 0114", date(1990, 1, 30), "westside"),
        PatientSpec(
            "Emma Johansson", "emma@harbor.example", "+1 312 555 0115", date(2001, 9, 9), "westside", sms_opt_in=True
        ),
        PatientSpec("Farah Haddad", "farah@harbor.example", "+1 312 555 0116", date(1984, 4, 17), "westside"),
    ),
    waitlist=(
        WaitSpec(
            patient="chloe@harbor.example",
            clinic="downtown",
            provider="dr.rivera@harbor.example",
            specialty="Psychiatry",
            modality="in_person",
            windows=((1, "09:00", "12:00"), (3, "09:00", "12:00")),
            urgency=3,
            reason="Would like an earlier medication review",
            days_waiting=12,
        ),
        WaitSpec(
            patient="david@harbor.example",
            clinic="westside",
            provider=None,
            specialty="Anxiety",
            modality=None,
            windows=((1, "13:00", "17:00"), (3, "13:00", "17:00")),
            urgency=2,
            reason="Any therapist, afternoons only",
            days_waiting=20,
        ),
        WaitSpec(
            patient="emma@harbor.example",
            clinic="downtown",
            provider="dr.chen@harbor.example",
            specialty=None,
            modality="in_person",
            windows=((4, "09:00", "17:00"),),
            urgency=1,
            reason="Prefers Fridays",
            days_waiting=5,
        ),
        WaitSpec(
            patient="farah@harbor.example",
            clinic="westside",
            provider="jordan.brooks@harbor.example",
            specialty="Couples therapy",
            modality=None,
            windows=tuple((d, "09:00", "12:00") for d in WEEKDAYS),
            urgency=4,
            reason="Needs to be seen soon",
            days_waiting=2,
        ),
    ),
)

SUMMIT = PracticeSpec(
    name="Summit Counseling",
    slug="summit",
    admin_name="Riley Summers",
    admin_email="admin@summit.example",
    clinics=(
        ClinicSpec("boulder", "Summit Boulder", "America/Denver", "800 Pearl Street, Boulder, CO", "+1 303 555 0100"),
        ClinicSpec("online", "Summit Online", "America/Los_Angeles", "Telehealth only", "+1 415 555 0100"),
    ),
    providers=(
        ProviderSpec(
            full_name="Dr. Amara Okafor",
            title="MD",
            kind="doctor",
            email="dr.okafor@summit.example",
            specialties=("Psychiatry", "Child & adolescent"),
            languages=("English",),
            modalities=("in_person", "telehealth"),
            bio="Child and adolescent psychiatrist.",
            hours=(
                Block("boulder", (0, 1, 2, 3), "09:00", "17:00", "in_person"),
                Block("online", (4,), "09:00", "13:00", "telehealth"),
            ),
        ),
        ProviderSpec(
            full_name="Dr. Nils Lindqvist",
            title="PsyD",
            kind="therapist",
            email="dr.lindqvist@summit.example",
            specialties=("Trauma", "Anxiety"),
            languages=("English", "Swedish"),
            modalities=("in_person",),
            bio="Psychologist specialising in trauma-focused therapy.",
            hours=(Block("boulder", WEEKDAYS, "10:00", "18:00"),),
        ),
        ProviderSpec(
            full_name="Sofia Alvarez",
            title="LMFT",
            kind="therapist",
            email="sofia.alvarez@summit.example",
            specialties=("Couples therapy", "Depression"),
            languages=("English", "Spanish"),
            modalities=("telehealth",),
            bio="Marriage and family therapist, sessions by video.",
            hours=(Block("online", WEEKDAYS, "09:00", "17:00", "telehealth"),),
        ),
    ),
    patients=(
        PatientSpec("Carla Reyes", "carla@summit.example", "+1 303 555 0121", date(1992, 2, 5), "boulder", "es"),
        PatientSpec(
            "Dan Whitaker", "dan@summit.example", "+1 303 555 0122", date(1975, 7, 19), "boulder", sms_opt_in=True
        ),
        PatientSpec("Erin Walsh", "erin@summit.example", "+1 303 555 0123", date(1999, 12, 1), "boulder"),
        PatientSpec("Felix Wagner", "felix@summit.example", "+1 415 555 0124", date(1986, 5, 28), "online"),
        PatientSpec(
            "Grace Liu", "grace@summit.example", "+1 415 555 0125", date(2003, 8, 11), "online", sms_opt_in=True
        ),
        PatientSpec("Hiro Tanaka", "hiro@summit.example", "+1 415 555 0126", date(1981, 10, 3), "online"),
    ),
    waitlist=(
        WaitSpec(
            patient="erin@summit.example",
            clinic="boulder",
            provider="dr.lindqvist@summit.example",
            specialty="Trauma",
            modality="in_person",
            windows=((0, "10:00", "13:00"), (2, "10:00", "13:00")),
            urgency=3,
            reason="Asked for an earlier start",
            days_waiting=9,
        ),
        WaitSpec(
            patient="felix@summit.example",
            clinic="online",
            provider=None,
            specialty="Couples therapy",
            modality="telehealth",
            windows=((1, "12:00", "17:00"), (3, "12:00", "17:00")),
            urgency=2,
            reason="Evenings impossible, lunchtime works",
            days_waiting=16,
        ),
        WaitSpec(
            patient="grace@summit.example",
            clinic="boulder",
            provider="dr.okafor@summit.example",
            specialty="Child & adolescent",
            modality=None,
            windows=((1, "09:00", "12:00"),),
            urgency=4,
            reason="Referred as urgent",
            days_waiting=1,
        ),
    ),
)

PRACTICES: tuple[PracticeSpec, ...] = (HARBOR, SUMMIT)


def _logins(practices: Sequence[PracticeSpec]) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    for practice in practices:
        rows.append((practice.name, Role.ADMIN.value, practice.admin_email))
        rows += [(practice.name, Role.DOCTOR.value, p.email) for p in practice.providers]
        rows += [(practice.name, Role.PATIENT.value, p.email) for p in practice.patients]
    return rows


# (practice, role, email); every one signs in with DEMO_PASSWORD.
DEMO_LOGINS: list[tuple[str, str, str]] = _logins(PRACTICES)


# --- time helpers ------------------------------------------------------------------------------------


def _hm(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def _local(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The aware UTC instant of a wall-clock time on a day in a zone (DST-safe: zoneinfo resolves it)."""
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


def _block_slots(block: Block, zone: ZoneInfo, day: date) -> Iterator[tuple[datetime, datetime]]:
    """Slot starts and ends of one block on one local day: session, buffer, session, ... inside the block."""
    if day.weekday() not in block.weekdays:
        return
    start = datetime.combine(day, _hm(block.start))
    end = datetime.combine(day, _hm(block.end))
    step = timedelta(minutes=SESSION_MINUTES + BUFFER_MINUTES)
    session = timedelta(minutes=SESSION_MINUTES)
    while start + session <= end:
        yield _local(day, start.time(), zone), _local(day, (start + session).time(), zone)
        start += step


@dataclass(frozen=True)
class Slot:
    start: datetime
    end: datetime
    clinic: str
    modality: str


def _slots(spec: ProviderSpec, zones: dict[str, ZoneInfo], first: int, last: int) -> list[Slot]:
    """The provider's slots on local days today+first .. today+last (inclusive), in time order."""
    found: list[Slot] = []
    for block in spec.hours:
        zone = zones[block.clinic]
        today = datetime.now(zone).date()
        for offset in range(first, last + 1):
            for start, end in _block_slots(block, zone, today + timedelta(days=offset)):
                found.append(Slot(start, end, block.clinic, block.modality))
    return sorted(found, key=lambda s: (s.start, s.clinic))


class _Calendar:
    """Busy intervals per provider and per patient, so no two demo appointments overlap."""

    def __init__(self) -> None:
        self._busy: dict[uuid.UUID, list[tuple[datetime, datetime]]] = {}

    def free(self, *owners: uuid.UUID, start: datetime, end: datetime) -> bool:
        return all(not (s < end and start < e) for owner in owners for s, e in self._busy.get(owner, ()))

    def take(self, *owners: uuid.UUID, start: datetime, end: datetime) -> None:
        for owner in owners:
            self._busy.setdefault(owner, []).append((start, end))


# --- writing one practice ----------------------------------------------------------------------------


def _create_tenant(spec: PracticeSpec, engine: Engine | None) -> uuid.UUID:
    with UnitOfWork(system=True, engine=engine) as uow:
        tenant = Tenant(name=spec.name, slug=spec.slug)
        uow.session.add(tenant)
        uow.commit()
        return tenant.id


def _delete_tenant(tenant_id: uuid.UUID, engine: Engine | None) -> None:
    """Undo a half-written practice (every tenant table cascades from tenants)."""
    with UnitOfWork(system=True, engine=engine) as uow:
        tenant = uow.session.get(Tenant, tenant_id)
        if tenant is not None:
            uow.session.delete(tenant)
            uow.commit()


def _fill_practice(spec: PracticeSpec, tenant_id: uuid.UUID, engine: Engine | None) -> dict[str, int]:
    now = datetime.now(UTC)
    with UnitOfWork(Actor.system(tenant_id), engine=engine) as uow:
        session = uow.session

        clinics = {
            c.key: Clinic(tenant_id=tenant_id, name=c.name, timezone=c.timezone, address=c.address, phone=c.phone)
            for c in spec.clinics
        }
        zones = {c.key: ZoneInfo(c.timezone) for c in spec.clinics}
        session.add_all(clinics.values())
        uow.flush()

        providers: dict[str, Provider] = {}
        for p in spec.providers:
            providers[p.email] = Provider(
                tenant_id=tenant_id,
                full_name=p.full_name,
                title=p.title,
                kind=p.kind,
                specialties=list(p.specialties),
                languages=list(p.languages),
                modalities=list(p.modalities),
                bio=p.bio,
            )
        session.add_all(providers.values())

        patients: dict[str, Patient] = {}
        for pt in spec.patients:
            patients[pt.email] = Patient(
                tenant_id=tenant_id,
                full_name=pt.full_name,
                date_of_birth=pt.date_of_birth,
                email=pt.email,
                phone=pt.phone,
                locale=pt.locale,
                home_clinic_id=clinics[pt.home_clinic].id,
            )
        session.add_all(patients.values())
        uow.flush()

        for p in spec.providers:
            provider = providers[p.email]
            for key in dict.fromkeys(b.clinic for b in p.hours):  # each clinic once, in order
                session.add(ProviderClinic(tenant_id=tenant_id, provider_id=provider.id, clinic_id=clinics[key].id))
            for block in p.hours:
                for weekday in block.weekdays:
                    session.add(
                        AvailabilityRule(
                            tenant_id=tenant_id,
                            provider_id=provider.id,
                            clinic_id=clinics[block.clinic].id,
                            weekday=weekday,
                            start_time=_hm(block.start),
                            end_time=_hm(block.end),
                            session_minutes=SESSION_MINUTES,
                            buffer_minutes=BUFFER_MINUTES,
                            modality=block.modality,
                        )
                    )
        for pt in spec.patients:
            session.add(
                NotificationPreference(tenant_id=tenant_id, patient_id=patients[pt.email].id, sms_opt_in=pt.sms_opt_in)
            )

        # Logins: the admin, every provider, every patient.
        patient_users: dict[uuid.UUID, uuid.UUID] = {}

        def login(
            email: str,
            full_name: str,
            role: Role,
            *,
            provider_id: uuid.UUID | None = None,
            patient_id: uuid.UUID | None = None,
        ) -> None:
            user = User(
                tenant_id=tenant_id, email=email, full_name=full_name, password_hash=hash_password(DEMO_PASSWORD)
            )
            if role == Role.ADMIN:
                user.mfa_secret_encrypted = encrypt_text(DEMO_ADMIN_TOTP_SECRET)
                user.mfa_enabled_at = now
            session.add(user)
            uow.flush()
            session.add(
                Membership(
                    tenant_id=tenant_id, user_id=user.id, role=role, provider_id=provider_id, patient_id=patient_id
                )
            )
            if patient_id is not None:
                patient_users[patient_id] = user.id

        login(spec.admin_email, spec.admin_name, Role.ADMIN)
        for p in spec.providers:
            login(p.email, p.full_name, Role.DOCTOR, provider_id=providers[p.email].id)
        for pt in spec.patients:
            login(pt.email, pt.full_name, Role.PATIENT, patient_id=patients[pt.email].id)
        uow.flush()

        appointments = _appointments(spec, tenant_id, providers, patients, clinics, zones, now)
        session.add_all(appointments)
        history = _history(spec, tenant_id, providers, patients, clinics, zones, now, appointments, patient_users)
        # In the order the foreign keys need: appointments, entries, offers (both), notifications, their ledger.
        for rows in (history.appointments, history.entries, history.offers, history.notifications, history.deliveries):
            session.add_all(rows)
            uow.flush()

        policy = WaitlistPolicy(tenant_id=tenant_id)  # the practice default (clinic_id None), model defaults
        session.add(policy)
        for w in spec.waitlist:
            joined = now - timedelta(days=w.days_waiting)
            session.add(
                WaitlistEntry(
                    tenant_id=tenant_id,
                    patient_id=patients[w.patient].id,
                    clinic_id=clinics[w.clinic].id,
                    provider_id=providers[w.provider].id if w.provider else None,
                    specialty=w.specialty,
                    modality=w.modality,
                    target_key=target_key(
                        clinics[w.clinic].id,
                        providers[w.provider].id if w.provider else None,
                        w.specialty,
                        w.modality,
                    ),
                    preferred_windows=[{"weekday": d, "start": s, "end": e} for d, s, e in w.windows],
                    timezone=clinics[w.clinic].timezone,
                    urgency=w.urgency,
                    reason=w.reason,
                    status=EntryStatus.WAITING,
                    created_at=joined,
                    updated_at=joined,
                    last_confirmed_at=joined,
                    expires_at=joined + timedelta(days=policy.entry_ttl_days),
                )
            )

        counts = {
            "clinics": len(clinics),
            "providers": len(providers),
            "patients": len(patients),
            "appointments": len(appointments),
            "waitlist_entries": len(spec.waitlist),
            "history_appointments": len(history.appointments),
            "history_offers": len(history.offers),
            "dead_letters": len(history.notifications),
        }
        # Ids and counts only, like every audit event.
        session.add(
            AuditEvent(
                tenant_id=tenant_id,
                actor_role=Role.SYSTEM.value,
                action="seed.demo_created",
                entity_type="tenant",
                entity_id=tenant_id,
                data=counts,
            )
        )
        uow.commit()
        return counts


def _appointments(
    spec: PracticeSpec,
    tenant_id: uuid.UUID,
    providers: dict[str, Provider],
    patients: dict[str, Patient],
    clinics: dict[str, Clinic],
    zones: dict[str, ZoneInfo],
    now: datetime,
) -> list[Appointment]:
    """Today's two for the first provider, ~10 upcoming and a few completed past ones; none overlapping."""
    calendar = _Calendar()
    result: list[Appointment] = []
    patient_list = [patients[p.email] for p in spec.patients]

    def book(provider: Provider, patient: Patient, slot: Slot, status: AppointmentStatus) -> bool:
        if not calendar.free(provider.id, patient.id, start=slot.start, end=slot.end):
            return False
        calendar.take(provider.id, patient.id, start=slot.start, end=slot.end)
        created = min(now, slot.start) - timedelta(days=7)
        result.append(
            Appointment(
                tenant_id=tenant_id,
                provider_id=provider.id,
                patient_id=patient.id,
                clinic_id=clinics[slot.clinic].id,
                start_at=slot.start,
                end_at=slot.end,
                modality=slot.modality,
                status=status,
                created_at=created,
                updated_at=slot.end if status == AppointmentStatus.COMPLETED else created,
            )
        )
        return True

    # Today, for the first provider: 10:00 and 11:00 local at their first clinic, whatever the weekday,
    # so the doctor's home page always shows a schedule for today (even if those times have passed).
    first = spec.providers[0]
    first_block = first.hours[0]
    zone = zones[first_block.clinic]
    today = datetime.now(zone).date()
    for i, hour in enumerate((10, 11)):
        start = _local(today, time(hour, 0), zone)
        slot = Slot(start, start + timedelta(minutes=SESSION_MINUTES), first_block.clinic, first_block.modality)
        book(providers[first.email], patient_list[i], slot, AppointmentStatus.BOOKED)

    def spread(count: int, first_day: int, last_day: int, status: AppointmentStatus, patient_offset: int) -> None:
        """Book `count` appointments spread over the days, round-robin over providers and patients."""
        n = len(spec.providers)
        per_provider = -(-count // n)  # rounded up
        for i in range(count):
            p = spec.providers[i % n]
            slots = _slots(p, zones, first_day, last_day)
            if not slots:
                continue
            stride = max(1, len(slots) // per_provider)
            begin = (i // n) * stride + (i % n) * 3  # spread over the days, providers staggered
            patient = patient_list[(i + patient_offset) % len(patient_list)]
            # The first free slot from there on (a clash can only be the patient's other appointment).
            for j in range(len(slots)):
                if book(providers[p.email], patient, slots[(begin + j) % len(slots)], status):
                    break

    spread(UPCOMING_PER_PRACTICE, 1, UPCOMING_DAYS, AppointmentStatus.BOOKED, patient_offset=2)
    spread(PAST_PER_PRACTICE, -PAST_DAYS, -1, AppointmentStatus.COMPLETED, patient_offset=0)
    return result


# --- history for the Insights page ------------------------------------------------------------------


@dataclass
class History:
    appointments: list[Appointment] = field(default_factory=list)
    entries: list[WaitlistEntry] = field(default_factory=list)
    offers: list[WaitlistOffer] = field(default_factory=list)
    notifications: list[Notification] = field(default_factory=list)
    deliveries: list[NotificationDelivery] = field(default_factory=list)


@dataclass(frozen=True)
class Chain:
    """What happens to one cancelled slot: when it is cancelled (so many days before, at a local time outside the
    quiet hours, so offers go out at once), the waitlist offers made for it in turn (each answered within the
    30-minute hold after so many minutes; None: left to expire), and whether someone books it directly afterwards
    (hours after the cancellation)."""

    days_before: int
    at: str
    offers: tuple[tuple[OfferStatus, float | None], ...]
    booked_directly_after_hours: float | None = None


# One cancellation per provider and week, taking these in turn: 4 of 6 slots filled, 3 of them from the waitlist;
# 2 late cancellations (the evening before: inside the 24-hour cancellation window of every daytime slot).
CHAINS = (
    Chain(3, "10:15", ((OfferStatus.ACCEPTED, 12),)),
    Chain(1, "19:40", ((OfferStatus.DECLINED, 15), (OfferStatus.EXPIRED, None))),
    Chain(2, "12:05", ((OfferStatus.DECLINED, 9), (OfferStatus.ACCEPTED, 25))),
    Chain(1, "08:45", ((OfferStatus.EXPIRED, None),), booked_directly_after_hours=5),
    Chain(1, "20:05", ((OfferStatus.ACCEPTED, 18),)),
    Chain(4, "16:30", ((OfferStatus.EXPIRED, None),)),
)
OFFER_HOLD = timedelta(minutes=30)  # WaitlistPolicy.offer_hold_minutes, the default
# Messages that failed for good (error texts as backend.notifications.delivery writes them: class, code, no body).
DEAD_LETTERS = {
    "harbor": (
        (Channel.EMAIL, "ChannelError (sendgrid-550): mailbox unavailable"),
        (Channel.SMS, "ChannelError (twilio-21610): Attempt to send to unsubscribed recipient"),
    ),
}
MAX_ATTEMPTS = 5  # backend.notifications.delivery.MAX_ATTEMPTS


def _history(
    spec: PracticeSpec,
    tenant_id: uuid.UUID,
    providers: dict[str, Provider],
    patients: dict[str, Patient],
    clinics: dict[str, Clinic],
    zones: dict[str, ZoneInfo],
    now: datetime,
    appointments: Sequence[Appointment],
    patient_users: dict[uuid.UUID, uuid.UUID],
) -> History:
    """The HISTORY_WEEKS weeks before this one, written as the services would have left them (see CHAINS)."""
    writer = _HistoryWriter(spec, tenant_id, clinics, patients, patient_users, appointments)
    this_monday = now.date() - timedelta(days=now.date().weekday())
    for week in range(HISTORY_WEEKS, 0, -1):
        first = (this_monday - timedelta(weeks=week) - now.date()).days
        for index, spec_provider in enumerate(spec.providers):
            slots = [s for s in _slots(spec_provider, zones, first, first + 6) if s.end < now - timedelta(days=1)]
            if len(slots) < HISTORY_VISITS + 1:
                continue
            turn = week * len(spec.providers) + index
            stride = len(slots) // (HISTORY_VISITS + 1)
            picks = [slots[(k * stride + turn) % len(slots)] for k in range(HISTORY_VISITS + 1)]
            provider = providers[spec_provider.email]
            for k, slot in enumerate(picks[:HISTORY_VISITS]):
                writer.visit(provider, slot, missed=(turn + k) % 7 == 3, booked_days_before=14 + k)
            # Each provider goes through every chain over the weeks (not the same few forever).
            chain = CHAINS[(week * (len(spec.providers) + 2) + index) % len(CHAINS)]
            writer.cancellation(provider, picks[-1], chain, turn)
    writer.close_open_entries()
    writer.dead_letters(DEAD_LETTERS.get(spec.slug, ()))
    return writer.history


class _HistoryWriter:
    """Writes the history's rows as the services would have: bookings, cancellations, offers and their holds,
    waitlist entries (one per patient and provider, offered again after a decline or an expiry, booked when an offer
    is accepted), and dead letters."""

    def __init__(
        self,
        spec: PracticeSpec,
        tenant_id: uuid.UUID,
        clinics: dict[str, Clinic],
        patients: dict[str, Patient],
        patient_users: dict[uuid.UUID, uuid.UUID],
        appointments: Sequence[Appointment],
    ) -> None:
        self.history = History()
        self.tenant_id = tenant_id
        self.clinics = clinics
        self.patient_users = patient_users
        self.calendar = _Calendar()
        for a in appointments:
            if a.patient_id is not None:
                self.calendar.take(a.provider_id, a.patient_id, start=a.start_at, end=a.end_at)
        # Not the first two patients (the ones the demo walks through): their pages stay short.
        self.pool = [patients[p.email] for p in spec.patients[2:]]
        self.sms_ok = {patients[p.email].id for p in spec.patients if p.sms_opt_in}
        self.turn = 0
        # (patient, provider, clinic) -> the entry still on the list after its offers so far.
        self.open_entries: dict[tuple[uuid.UUID, uuid.UUID, uuid.UUID], WaitlistEntry] = {}

    def _free_patient(self, slot: Slot, skip: set[uuid.UUID]) -> Patient | None:
        for i in range(len(self.pool)):
            patient = self.pool[(self.turn + i) % len(self.pool)]
            if patient.id not in skip and self.calendar.free(patient.id, start=slot.start, end=slot.end):
                self.turn += i + 1
                return patient
        return None

    def _appointment(self, provider: Provider, patient: Patient, slot: Slot, status: AppointmentStatus,
                     created: datetime, **fields: Any) -> Appointment:  # fmt: skip
        if status not in (AppointmentStatus.CANCELLED, AppointmentStatus.LATE_CANCELLED):
            self.calendar.take(provider.id, patient.id, start=slot.start, end=slot.end)
            fields.setdefault("booked_by_user_id", self.patient_users[patient.id])
        row = Appointment(
            tenant_id=self.tenant_id, provider_id=provider.id, patient_id=patient.id,
            clinic_id=self.clinics[slot.clinic].id, start_at=slot.start, end_at=slot.end, modality=slot.modality,
            status=status, created_at=created, updated_at=fields.pop("updated_at", slot.end), **fields,
        )  # fmt: skip
        self.history.appointments.append(row)
        return row

    def visit(self, provider: Provider, slot: Slot, *, missed: bool, booked_days_before: int) -> None:
        """A visit booked a couple of weeks ahead, then attended or missed."""
        patient = self._free_patient(slot, set())
        if patient is None or not self.calendar.free(provider.id, start=slot.start, end=slot.end):
            return
        attended = AppointmentStatus.NO_SHOW if missed else AppointmentStatus.COMPLETED
        self._appointment(provider, patient, slot, attended, slot.start - timedelta(days=booked_days_before))

    def _entry(self, patient: Patient, provider: Provider, slot: Slot, at: datetime, urgency: int) -> WaitlistEntry:
        clinic = self.clinics[slot.clinic]
        key = (patient.id, provider.id, clinic.id)
        entry = self.open_entries.get(key)
        if entry is None:
            joined = at - timedelta(days=20 + self.turn % 40)
            entry = WaitlistEntry(
                tenant_id=self.tenant_id, patient_id=patient.id, clinic_id=clinic.id, provider_id=provider.id,
                target_key=target_key(clinic.id, provider.id, None, None), timezone=clinic.timezone, urgency=urgency,
                status=EntryStatus.WAITING, created_at=joined, updated_at=joined, last_confirmed_at=joined,
                expires_at=joined + timedelta(days=90),
            )  # fmt: skip
            self.open_entries[key] = entry
            self.history.entries.append(entry)
        return entry

    def cancellation(self, provider: Provider, slot: Slot, chain: Chain, turn: int) -> None:
        """One booked slot cancelled, then offered from the waitlist in turn (or booked directly), as `chain` says."""
        if not self.calendar.free(provider.id, start=slot.start, end=slot.end):
            return
        first = self._free_patient(slot, set())
        if first is None:
            return
        clinic = self.clinics[slot.clinic]
        zone = ZoneInfo(clinic.timezone)
        day = slot.start.astimezone(zone).date() - timedelta(days=chain.days_before)
        cancelled_at = _local(day, _hm(chain.at), zone)
        # BookingPolicy.cancellation_window_hours (24, the default) decides whether it is late.
        late = slot.start - cancelled_at < timedelta(hours=24)
        status = AppointmentStatus.LATE_CANCELLED if late else AppointmentStatus.CANCELLED
        self._appointment(provider, first, slot, status, cancelled_at - timedelta(days=21), cancelled_at=cancelled_at,
                          updated_at=cancelled_at, booked_by_user_id=self.patient_users[first.id])  # fmt: skip
        offered: set[uuid.UUID] = {first.id}
        at = cancelled_at + timedelta(minutes=1)  # the freed-slot task runs right after the cancellation commits
        for n, (outcome, answer_minutes) in enumerate(chain.offers):
            patient = self._free_patient(slot, offered)
            if patient is None:
                return
            offered.add(patient.id)
            answered = at + (timedelta(minutes=answer_minutes) if answer_minutes is not None else OFFER_HOLD)
            entry = self._entry(patient, provider, slot, at, urgency=1 + (turn + n) % 4)
            ranked = score(
                Candidate(entry.id, patient.id, entry.urgency, entry.created_at, entry.timezone,
                          provider_id=provider.id, clinic_id=clinic.id),
                OpenSlot(slot.start, slot.end, provider.id, clinic.id, slot.modality), Weights(), at,
            )  # fmt: skip
            accepted = outcome == OfferStatus.ACCEPTED
            if accepted:
                attended = AppointmentStatus.NO_SHOW if turn % 5 == 2 else AppointmentStatus.COMPLETED
                hold = self._appointment(provider, patient, slot, attended, at)
                entry.status = EntryStatus.BOOKED
                del self.open_entries[(patient.id, provider.id, clinic.id)]
            else:  # the hold is released and the entry goes back to waiting
                hold = self._appointment(provider, patient, slot, AppointmentStatus.CANCELLED, at,
                                         cancelled_at=answered, updated_at=answered,
                                         cancel_reason=f"offer {outcome}")  # fmt: skip
            entry.version += 2
            entry.updated_at = answered
            self.history.offers.append(
                WaitlistOffer(
                    tenant_id=self.tenant_id, entry_id=entry.id, appointment_id=hold.id, provider_id=provider.id,
                    clinic_id=clinic.id, slot_start=slot.start, slot_end=slot.end, status=outcome, kind="auto",
                    score=ranked.total, reasons=list(ranked.reasons), expires_at=at + OFFER_HOLD, responded_at=answered,
                    created_at=at,
                )
            )  # fmt: skip
            if accepted:
                return
            at = answered + timedelta(minutes=1)  # the next candidate is offered as soon as this one is closed
        if chain.booked_directly_after_hours is not None:
            patient = self._free_patient(slot, offered)
            if patient is not None:
                booked_at = cancelled_at + timedelta(hours=chain.booked_directly_after_hours)
                self._appointment(provider, patient, slot, AppointmentStatus.COMPLETED, booked_at)
        else:
            self.calendar.take(provider.id, start=slot.start, end=slot.end)  # stays free: nothing else goes there

    def close_open_entries(self) -> None:
        """Entries still waiting after their last offer: the patient left the list a few days later."""
        for entry in self.open_entries.values():
            entry.status = EntryStatus.CANCELLED
            entry.version += 1
            entry.updated_at = entry.updated_at + timedelta(days=3)
        self.open_entries.clear()

    def dead_letters(self, failures: Sequence[tuple[Channel, str]]) -> None:
        """The offer messages of the first offers made (an SMS only to a patient who takes texts) failed for good."""
        entries = {e.id: e for e in self.history.entries}
        unused = list(self.history.offers)
        for channel, error in failures:
            wanted = [o for o in unused if channel != Channel.SMS or entries[o.entry_id].patient_id in self.sms_ok]
            if not wanted:
                continue
            offer = wanted[0]
            unused.remove(offer)
            entry = entries[offer.entry_id]
            last_try = offer.created_at + timedelta(minutes=31)  # five tries with backoff, the last half an hour on
            note = Notification(
                tenant_id=self.tenant_id, patient_id=entry.patient_id, event_type="waitlist_offer", channel=channel,
                payload={"offer_id": str(offer.id), "entry_id": str(entry.id),
                         "appointment_id": str(offer.appointment_id), "clinic_id": str(offer.clinic_id),
                         "provider_id": str(offer.provider_id)},
                status=NotificationStatus.DEAD, attempts=MAX_ATTEMPTS, last_error=error, next_attempt_at=last_try,
                created_at=offer.created_at,
            )  # fmt: skip
            self.history.notifications.append(note)
            self.history.deliveries.append(
                NotificationDelivery(
                    tenant_id=self.tenant_id, notification_id=note.id, status=NotificationStatus.DEAD,
                    attempts=MAX_ATTEMPTS, last_error=error, next_attempt_at=last_try, created_at=offer.created_at,
                    updated_at=last_try, claim_generation=MAX_ATTEMPTS,
                )
            )  # fmt: skip


# --- entry points ------------------------------------------------------------------------------------


def existing_slugs(engine: Engine | None = None) -> set[str]:
    """The slugs of every practice in the database."""
    with UnitOfWork(system=True, engine=engine) as uow:
        return set(uow.session.exec(select(Tenant.slug)).all())


def seed_demo(*, if_empty: bool = False, engine: Engine | None = None) -> list[str]:
    """Create the demo practices that do not exist yet; return the slugs created.

    With `if_empty`, do nothing at all when the database has any practice. `engine` defaults to the app's.
    """
    slugs = existing_slugs(engine)
    if if_empty and slugs:
        return []
    created: list[str] = []
    for spec in PRACTICES:
        if spec.slug in slugs:
            continue
        tenant_id = _create_tenant(spec, engine)
        try:
            _fill_practice(spec, tenant_id, engine)
        except BaseException:
            _delete_tenant(tenant_id, engine)
            raise
        created.append(spec.slug)
    return created


def format_logins(url: str | None = None) -> str:
    """The demo logins table (no PHI beyond these fictional logins)."""
    width_practice = max(len(p) for p, _, _ in DEMO_LOGINS)
    width_role = max(len(r) for _, r, _ in DEMO_LOGINS)
    lines = [
        f"Demo logins (password for all: {DEMO_PASSWORD})",
        f"Admins also enter a code: add the key {DEMO_ADMIN_TOTP_SECRET} to an authenticator app",
        "",
    ]
    lines.append(f"{'practice'.ljust(width_practice)}  {'role'.ljust(width_role)}  email")
    for practice, role, email in DEMO_LOGINS:
        lines.append(f"{practice.ljust(width_practice)}  {role.ljust(width_role)}  {email}")
    if url:
        lines += ["", f"Open {url}"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backend.seed", description="Create or show the demo data.")
    parser.add_argument("--demo", action="store_true", help="create the two demo practices")
    parser.add_argument("--if-empty", action="store_true", help="with --demo: do nothing if any tenant exists")
    parser.add_argument("--print-logins", action="store_true", help="print the demo logins")
    parser.add_argument("--url", help="with --print-logins: the address to open")
    args = parser.parse_args(argv)
    if not (args.demo or args.print_logins):
        parser.error("nothing to do: pass --demo and/or --print-logins")

    if args.demo:
        created = seed_demo(if_empty=args.if_empty)
        if created:
            print(f"Created demo practices: {', '.join(created)}")
        else:
            print("Demo data: nothing to do (database already has practices)")
    if args.print_logins:
        print(format_logins(args.url))
    return 0


if __name__ == "__main__":
    sys.exit(main())
