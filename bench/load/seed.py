"""The load test's practice group, written fast: Core bulk INSERTs as the database's owner, not the services.

One practice ("Load Practice Group") with CLINICS clinics in two US zones, `providers` providers (Monday-Friday
09:00-17:00 local, 50-minute sessions and a 10-minute buffer: 8 slots a day), `patients` patients each with a
login, one doctor login per provider, two admins (enrolled in MFA, as admins must be), a year of history (about 6
of a provider's 8 weekday slots taken: mostly completed, some cancelled, late-cancelled or missed), the coming
weeks about half booked, and a waitlist: the first `waiting` patients each wait for one provider.

Rows are built as the models (so every default and every column type, encryption included, is the app's own)
and inserted with executemany in chunks. No ANALYZE: the tables are left to autovacuum, whatever state it is in.
Patients are spread so that no patient holds two appointments at one time (slots start on the hour in UTC in
both zones, and the providers busy at one hour get distinct patients), as the exclusion constraints require.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

CLINIC_ZONES = ("America/New_York", "America/New_York", "America/Chicago", "America/Chicago", "America/New_York")
SPECIALTIES = ("Anxiety", "Depression", "Psychiatry", "Trauma", "Couples", "ADHD", "Child and adolescent")
LANGUAGES = (["English"], ["English", "Spanish"], ["English"], ["English", "Mandarin"])
SLOT_HOURS = tuple(range(9, 17))  # 09:00 ... 16:00 starts, 50 minutes each
SESSION_MINUTES = 50
CHUNK = 5000


@dataclass
class Seeded:
    """Ids the load test needs (never patient data: the Locust process gets tokens, not names)."""

    tenant_id: uuid.UUID
    clinics: list[tuple[uuid.UUID, str]]  # (id, zone)
    providers: list[dict[str, Any]]  # id, clinic_id, specialty, user_id
    patients: list[tuple[uuid.UUID, uuid.UUID]]  # (patient id, user id), in order
    admins: list[uuid.UUID]  # user ids
    counts: dict[str, int] = field(default_factory=dict)


def _row(model: type, **values: Any) -> dict[str, Any]:
    """A model's full row (defaults filled in by the model) as a dict for a Core INSERT."""
    obj = model(**values)
    return {column.name: getattr(obj, column.name) for column in model.__table__.columns}  # type: ignore[attr-defined]


def _insert(conn: sa.Connection, model: type, rows: Iterable[dict[str, Any]]) -> int:
    table = model.__table__  # type: ignore[attr-defined]
    total = 0
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= CHUNK:
            conn.execute(sa.insert(table), batch)
            total += len(batch)
            batch = []
    if batch:
        conn.execute(sa.insert(table), batch)
        total += len(batch)
    return total


def _weekdays(first: date, last: date) -> Iterator[date]:
    day = first
    while day <= last:
        if day.weekday() < 5:
            yield day
        day += timedelta(days=1)


def seed(owner_url: str, *, patients: int = 10_000, providers: int = 100, history_days: int = 365,
         future_days: int = 56, waiting: int = 1000, password_hash: str, rng_seed: int = 13,
         log: Any = print) -> Seeded:  # fmt: skip
    """Write the practice group into the (migrated, empty) database at `owner_url`; return its ids."""
    from backend.identity.models import Membership, Patient, Provider, ProviderClinic, User
    from backend.scheduling.models import Appointment, AppointmentStatus, AvailabilityRule, BookingPolicy
    from backend.tenancy.context import Role
    from backend.tenancy.models import Clinic, Tenant
    from backend.waitlist.models import EntryStatus, WaitlistEntry, WaitlistPolicy, target_key
    from bench import _admin as bench_admin

    rng = random.Random(rng_seed)
    started = time.perf_counter()
    engine = sa.create_engine(owner_url)
    counts: dict[str, int] = {}
    now = datetime.now(UTC)
    today = now.date()
    tenant_id = uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(sa.insert(Tenant.__table__), [_row(Tenant, id=tenant_id, name="Load Practice Group",  # type: ignore[attr-defined]
                                                        slug=f"load-{tenant_id.hex[:8]}")])  # fmt: skip
        clinics = [
            _row(Clinic, tenant_id=tenant_id, name=f"Load Clinic {i + 1}", timezone=zone, address=f"{i + 1} Main St")
            for i, zone in enumerate(CLINIC_ZONES)
        ]
        _insert(conn, Clinic, clinics)
        # Offers at any hour (the figures are about the load, not about quiet hours), and room for every join.
        _insert(conn, BookingPolicy, [_row(BookingPolicy, tenant_id=tenant_id, min_notice_minutes=60, horizon_days=120)])
        _insert(conn, WaitlistPolicy, [_row(WaitlistPolicy, tenant_id=tenant_id, quiet_hours_start=None,
                                            quiet_hours_end=None, max_active_per_provider=1000,
                                            max_active_per_clinic=20_000, max_entries_per_patient=5)])  # fmt: skip
        prov_rows, links, rules, users, members = [], [], [], [], []
        provider_info = []
        for i in range(providers):
            clinic = clinics[i % len(clinics)]
            specialty = SPECIALTIES[i % len(SPECIALTIES)]
            row = _row(Provider, tenant_id=tenant_id, full_name=f"Provider {i:03d}", title="MD" if i % 3 else "PsyD",
                       specialties=[specialty, SPECIALTIES[(i + 3) % len(SPECIALTIES)]],
                       languages=LANGUAGES[i % len(LANGUAGES)], modalities=["in_person", "telehealth"])  # fmt: skip
            prov_rows.append(row)
            links.append(_row(ProviderClinic, tenant_id=tenant_id, provider_id=row["id"], clinic_id=clinic["id"]))
            for weekday in range(5):
                rules.append(_row(AvailabilityRule, tenant_id=tenant_id, provider_id=row["id"], clinic_id=clinic["id"],
                                  weekday=weekday, start_time=dtime(9, 0), end_time=dtime(17, 0),
                                  session_minutes=SESSION_MINUTES, buffer_minutes=10))  # fmt: skip
            user = _row(User, tenant_id=tenant_id, email=f"provider{i:03d}@load.example", full_name=row["full_name"],
                        password_hash=password_hash)  # fmt: skip
            users.append(user)
            members.append(_row(Membership, tenant_id=tenant_id, user_id=user["id"], role=Role.DOCTOR,
                                provider_id=row["id"]))  # fmt: skip
            provider_info.append({"id": row["id"], "clinic_id": clinic["id"], "zone": clinic["timezone"],
                                  "specialty": specialty, "user_id": user["id"]})  # fmt: skip
        counts["providers"] = _insert(conn, Provider, prov_rows)
        _insert(conn, ProviderClinic, links)
        _insert(conn, AvailabilityRule, rules)
        admins = []
        for i in range(2):
            admin = User(tenant_id=tenant_id, email=f"admin{i}@load.example", full_name=f"Load Admin {i}",
                         password_hash=password_hash)  # fmt: skip
            bench_admin.enrol(admin)  # admins must use MFA
            users.append({c.name: getattr(admin, c.name) for c in User.__table__.columns})  # type: ignore[attr-defined]
            members.append(_row(Membership, tenant_id=tenant_id, user_id=admin.id, role=Role.ADMIN))
            admins.append(admin.id)
        patient_rows = []
        patient_ids: list[tuple[uuid.UUID, uuid.UUID]] = []
        for i in range(patients):
            clinic = clinics[i % len(clinics)]
            p = _row(Patient, tenant_id=tenant_id, full_name=f"Load Patient {i:05d}", email=f"patient{i:05d}@load.example",
                     home_clinic_id=clinic["id"], date_of_birth=date(1950 + i % 50, 1 + i % 12, 1 + i % 28))  # fmt: skip
            patient_rows.append(p)
            user = _row(User, tenant_id=tenant_id, email=p["email"], full_name=p["full_name"],
                        password_hash=password_hash)  # fmt: skip
            users.append(user)
            members.append(_row(Membership, tenant_id=tenant_id, user_id=user["id"], role=Role.PATIENT,
                                patient_id=p["id"]))  # fmt: skip
            patient_ids.append((p["id"], user["id"]))
        counts["patients"] = _insert(conn, Patient, patient_rows)
        counts["users"] = _insert(conn, User, users)
        _insert(conn, Membership, members)
        log(f"seed: practice, {providers} providers, {patients} patients and their logins "
            f"in {time.perf_counter() - started:.1f} s")  # fmt: skip

        def appointments() -> Iterator[dict[str, Any]]:
            history_statuses = ([AppointmentStatus.COMPLETED] * 85 + [AppointmentStatus.CANCELLED] * 8
                                + [AppointmentStatus.LATE_CANCELLED] * 4 + [AppointmentStatus.NO_SHOW] * 3)  # fmt: skip
            first, last = today - timedelta(days=history_days), today + timedelta(days=future_days)
            zones = {info["zone"]: ZoneInfo(info["zone"]) for info in provider_info}
            for day in _weekdays(first, last):
                past = day < today
                for p_index, info in enumerate(provider_info):
                    zone = zones[info["zone"]]
                    for hour in SLOT_HOURS:
                        if rng.random() >= (0.75 if past else 0.5):
                            continue
                        start = datetime.combine(day, dtime(hour, 0), zone).astimezone(UTC)
                        if not past and start < now + timedelta(hours=2):
                            continue
                        # Distinct patients for the providers busy at one UTC hour: no patient is double-booked.
                        hour_index = int(start.timestamp()) // 3600
                        patient_id, user_id = patient_ids[(p_index + providers * (hour_index % 97)) % patients]
                        status = rng.choice(history_statuses) if past else AppointmentStatus.BOOKED
                        booked_at = start - timedelta(days=rng.randint(1, 40))
                        cancelled = status in (AppointmentStatus.CANCELLED, AppointmentStatus.LATE_CANCELLED)
                        yield _row(Appointment, tenant_id=tenant_id, provider_id=info["id"], patient_id=patient_id,
                                   clinic_id=info["clinic_id"], start_at=start,
                                   end_at=start + timedelta(minutes=SESSION_MINUTES), status=status,
                                   booked_by_user_id=user_id, created_at=min(booked_at, now),
                                   updated_at=min(start, now) if past else min(booked_at, now),
                                   cancelled_at=start - timedelta(hours=rng.randint(2, 72)) if cancelled else None)  # fmt: skip

        counts["appointments"] = _insert(conn, Appointment, appointments())
        log(f"seed: {counts['appointments']} appointments in {time.perf_counter() - started:.1f} s")

        def entries() -> Iterator[dict[str, Any]]:
            for i in range(min(waiting, patients)):
                info = provider_info[rng.randrange(len(provider_info))]
                joined = now - timedelta(days=rng.randint(0, 60), minutes=rng.randint(0, 1440))
                yield _row(WaitlistEntry, tenant_id=tenant_id, patient_id=patient_ids[i][0], clinic_id=info["clinic_id"],
                           provider_id=info["id"], timezone=info["zone"], urgency=rng.choice((1, 2, 2, 3)),
                           status=EntryStatus.WAITING, target_key=target_key(info["clinic_id"], info["id"], None, None),
                           preferred_windows=[] if i % 3 else [{"weekday": i % 5, "start": "09:00", "end": "13:00"}],
                           created_at=joined, updated_at=joined, last_confirmed_at=joined,
                           expires_at=joined + timedelta(days=90))  # fmt: skip

        counts["waitlist_entries"] = _insert(conn, WaitlistEntry, entries())
    engine.dispose()
    log(f"seed: done in {time.perf_counter() - started:.1f} s: {counts}")
    return Seeded(
        tenant_id=tenant_id,
        clinics=[(c["id"], c["timezone"]) for c in clinics],
        providers=provider_info,
        patients=patient_ids,
        admins=admins,
        counts=counts,
    )
