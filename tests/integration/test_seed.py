"""The demo seed: what it creates, that it keeps the invariants, that it runs once, and its logins.

Assertions read the tables with plain Core queries (no unit of work), so they check what is really stored.
"""

from __future__ import annotations

import itertools
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from backend import seed
from backend.db import make_engine
from backend.identity.security import verify_password
from backend.models import (
    Appointment,
    AvailabilityRule,
    Clinic,
    Membership,
    Patient,
    Provider,
    Tenant,
    User,
    WaitlistEntry,
    WaitlistPolicy,
    metadata,
)
from backend.scheduling.models import ACTIVE_APPOINTMENT_STATUSES
from backend.settings import PROJECT_ROOT

tenants = Tenant.__table__
clinics = Clinic.__table__
providers = Provider.__table__
patients = Patient.__table__
users = User.__table__
memberships = Membership.__table__
appointments = Appointment.__table__
rules = AvailabilityRule.__table__
entries = WaitlistEntry.__table__
policies = WaitlistPolicy.__table__

TENANT_TABLES = [t for t in metadata.sorted_tables if "tenant_id" in t.c]


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[sa.Engine]:
    """A migrated SQLite file with the app's own engine settings (foreign keys on)."""
    url = f"sqlite:///{tmp_path / 'seed.db'}"
    cfg = Config(str(PROJECT_ROOT / "alembic.ini"))
    cfg.set_main_option("sqlalchemy.url", url)
    command.upgrade(cfg, "head")
    engine = make_engine(url)
    yield engine
    engine.dispose()


def _counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t in metadata.tables.values()
        }


def _rows(conn: sa.Connection, table: sa.Table, tenant_id: uuid.UUID) -> list[Any]:
    return list(conn.execute(sa.select(table).where(table.c.tenant_id == tenant_id)))


def _minutes(t: time) -> int:
    return t.hour * 60 + t.minute


def _overlaps(intervals: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    ordered = sorted(intervals)
    return [b for a, b in itertools.pairwise(ordered) if b[0] < a[1]]


class _Local:
    """Appointment times in their clinic's zone."""

    def __init__(self, clinic_rows: list[Any]) -> None:
        self.zone_of = {c.id: ZoneInfo(c.timezone) for c in clinic_rows}

    def start(self, a: Any) -> datetime:
        return a.start_at.astimezone(self.zone_of[a.clinic_id])

    def end(self, a: Any) -> datetime:
        return a.end_at.astimezone(self.zone_of[a.clinic_id])

    def is_today(self, a: Any) -> bool:
        return self.start(a).date() == datetime.now(self.zone_of[a.clinic_id]).date()


def _assert_no_overlaps(appts: list[Any]) -> None:
    """Invariant 1: no overlapping active appointments per provider, nor per patient."""
    by_provider: dict[uuid.UUID, list[tuple[datetime, datetime]]] = defaultdict(list)
    by_patient: dict[uuid.UUID, list[tuple[datetime, datetime]]] = defaultdict(list)
    for a in appts:
        if a.status in ACTIVE_APPOINTMENT_STATUSES:
            by_provider[a.provider_id].append((a.start_at, a.end_at))
            by_patient[a.patient_id].append((a.start_at, a.end_at))
    for owner, intervals in [*by_provider.items(), *by_patient.items()]:
        assert _overlaps(intervals) == [], owner


def _assert_on_availability_grid(appts: list[Any], rule_rows: list[Any], local: _Local) -> None:
    """Every appointment but today's two sits on a weekly availability slot, in the clinic's local time."""
    assert rule_rows
    for a in appts:
        if local.is_today(a):
            continue  # today's two are made even on a weekend
        start, end = local.start(a), local.end(a)
        fits = [
            r
            for r in rule_rows
            if (r.provider_id, r.clinic_id, r.weekday, r.modality)
            == (a.provider_id, a.clinic_id, start.weekday(), a.modality)
            and r.start_time <= start.time()
            and end.time() <= r.end_time
            and (_minutes(start.time()) - _minutes(r.start_time)) % (r.session_minutes + r.buffer_minutes) == 0
        ]
        assert fits, f"appointment {a.id} is off the availability grid"


def _assert_practice(conn: sa.Connection, tenant: Any, now: datetime) -> None:
    tid = tenant.id
    clinic_rows = _rows(conn, clinics, tid)
    assert len(clinic_rows) >= 2
    assert len({c.timezone for c in clinic_rows}) >= 2, "clinics in at least two time zones"
    local = _Local(clinic_rows)

    roles = defaultdict(list)
    for m in _rows(conn, memberships, tid):
        roles[m.role].append(m)
    assert len(roles["admin"]) >= 1
    assert len(roles["doctor"]) >= 2
    assert len(roles["patient"]) >= 2
    assert all(m.provider_id for m in roles["doctor"])
    assert all(m.patient_id for m in roles["patient"])
    assert len(_rows(conn, providers, tid)) >= 3
    patient_rows = _rows(conn, patients, tid)
    assert len(patient_rows) >= 6
    assert all(p.home_clinic_id and p.email.endswith(".example") and p.phone for p in patient_rows)

    appts = _rows(conn, appointments, tid)
    assert all(a.start_at.tzinfo is not None and a.end_at - a.start_at == timedelta(minutes=50) for a in appts)
    _assert_no_overlaps(appts)
    _assert_on_availability_grid(appts, _rows(conn, rules, tid), local)

    completed = [a for a in appts if a.status == "completed"]
    assert completed
    assert all(a.end_at <= now for a in completed)

    # Today's schedule for the first doctor: two appointments, 10:00 and 11:00 in the clinic's zone.
    first_email = next(p for p in seed.PRACTICES if p.slug == tenant.slug).providers[0].email
    first_provider = conn.execute(
        sa.select(memberships.c.provider_id)
        .join(users, users.c.id == memberships.c.user_id)
        .where(users.c.tenant_id == tid, users.c.email == first_email, memberships.c.role == "doctor")
    ).scalar_one()
    todays = [a for a in appts if local.is_today(a)]
    assert {a.provider_id for a in todays} == {first_provider}
    assert sorted(local.start(a).time() for a in todays) == [time(10, 0), time(11, 0)]
    assert all(a.status == "booked" for a in todays)

    upcoming = [a for a in appts if a.status == "booked" and not local.is_today(a)]
    assert len(upcoming) >= 8
    assert all(now < a.start_at < now + timedelta(days=22) for a in upcoming)

    waiting = [e for e in _rows(conn, entries, tid) if e.status == "waiting"]
    assert 3 <= len(waiting) <= 4
    for e in waiting:
        assert e.timezone == str(local.zone_of[e.clinic_id])
        assert 1 <= e.urgency <= 4
        assert e.preferred_windows
        assert all(set(w) == {"weekday", "start", "end"} for w in e.preferred_windows)
    assert [p.clinic_id for p in _rows(conn, policies, tid)] == [None]


def _assert_tenancy(conn: sa.Connection, tenant_ids: set[uuid.UUID]) -> None:
    """Invariant 2: every row of every tenant table belongs to one of the tenants, and so does all it points at."""
    for table in TENANT_TABLES:
        found = set(conn.execute(sa.select(table.c.tenant_id).distinct()).scalars())
        assert found <= tenant_ids, table.name
    for table in TENANT_TABLES:
        for fk in table.foreign_keys:
            parent = fk.column.table
            if fk.parent.name == "tenant_id" or "tenant_id" not in parent.c:
                continue
            crossing = conn.execute(
                sa.select(sa.func.count())
                .select_from(table.join(parent, fk.parent == fk.column))
                .where(table.c.tenant_id != parent.c.tenant_id)
            ).scalar_one()
            assert crossing == 0, f"{table.name}.{fk.parent.name} points into another tenant"


def _assert_demo_data(engine: sa.Engine) -> None:
    now = datetime.now(UTC)
    with engine.connect() as conn:
        tenant_rows = list(conn.execute(sa.select(tenants).order_by(tenants.c.slug)))
        assert [(t.slug, t.name) for t in tenant_rows] == [
            ("harbor", "Harbor Mental Health"),
            ("summit", "Summit Counseling"),
        ]
        for tenant in tenant_rows:
            _assert_practice(conn, tenant, now)
        _assert_tenancy(conn, {t.id for t in tenant_rows})


def test_demo_data_on_postgresql(db: sa.Engine) -> None:
    assert seed.existing_slugs() == set(), "the test database should start empty"
    assert seed.seed_demo() == ["harbor", "summit"]
    _assert_demo_data(db)


def test_demo_data_on_sqlite(sqlite_engine: sa.Engine) -> None:
    assert seed.seed_demo(engine=sqlite_engine) == ["harbor", "summit"]
    _assert_demo_data(sqlite_engine)


def test_if_empty_second_time_adds_nothing(db: sa.Engine, capsys: pytest.CaptureFixture[str]) -> None:
    assert seed.main(["--demo", "--if-empty"]) == 0
    assert "Created demo practices: harbor, summit" in capsys.readouterr().out
    before = _counts(db)
    assert before["tenants"] == 2

    assert seed.main(["--demo", "--if-empty"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert _counts(db) == before
    # Without --if-empty, existing practices are skipped rather than duplicated.
    assert seed.seed_demo() == []
    assert _counts(db) == before


def test_demo_logins_verify(db: sa.Engine) -> None:
    seed.seed_demo()
    assert {role for _, role, _ in seed.DEMO_LOGINS} == {"admin", "doctor", "patient"}
    required = {
        "admin@harbor.example",
        "dr.rivera@harbor.example",
        "dr.chen@harbor.example",
        "alice@harbor.example",
        "ben@harbor.example",
        "admin@summit.example",
        "dr.okafor@summit.example",
        "dr.lindqvist@summit.example",
        "carla@summit.example",
        "dan@summit.example",
    }
    assert required <= {email for _, _, email in seed.DEMO_LOGINS}
    with db.connect() as conn:
        for practice, role, email in seed.DEMO_LOGINS:
            row = conn.execute(
                sa.select(users.c.password_hash, memberships.c.role)
                .join(tenants, tenants.c.id == users.c.tenant_id)
                .join(memberships, memberships.c.user_id == users.c.id)
                .where(users.c.email == email, tenants.c.name == practice)
            ).one()
            assert row.role == role, email
            assert verify_password(row.password_hash, seed.DEMO_PASSWORD), email
            assert not verify_password(row.password_hash, "wrong-password")


def test_print_logins(capsys: pytest.CaptureFixture[str]) -> None:
    assert seed.main(["--print-logins", "--url", "http://localhost:3000"]) == 0
    out = capsys.readouterr().out
    assert seed.DEMO_PASSWORD in out
    assert all(email in out for _, _, email in seed.DEMO_LOGINS)
    assert out.rstrip().endswith("Open http://localhost:3000")

    assert seed.main(["--print-logins"]) == 0
    assert "Open" not in capsys.readouterr().out


def test_nothing_to_do_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exc:
        seed.main([])
    assert exc.value.code == 2
