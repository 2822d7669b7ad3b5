"""Issue 10 item 6 in a real browser: time off over booked sessions shows them and asks (cancel and notify, or
keep); the patient's history says "Completed", never "Booked", for a finished session; the doctor's waitlist
console shows the same honest estimated wait as the patient's page.

Each test writes its own scene straight into the e2e database: a doctor of Harbor Downtown of its own (with a
login), its own patients, and sessions ten weeks ahead, so no other e2e test reads or changes them.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from playwright.sync_api import Page, expect
from sqlmodel import select

from backend.db import UnitOfWork, make_engine
from backend.identity.models import Membership, Patient, Provider, ProviderClinic, User
from backend.identity.security import hash_password
from backend.notifications.models import Notification
from backend.scheduling.models import Appointment, AppointmentStatus, AvailabilityRule, TimeOff
from backend.seed import DEMO_PASSWORD
from backend.tenancy.context import Actor, Role
from backend.tenancy.models import Clinic, Tenant
from backend.waitlist.models import EntryStatus, WaitlistEntry
from portal.state.my_appointments import NOT_RECORDED
from tests.conftest import TEST_DB_NAME, _db_url
from tests.e2e.test_portal import sign_in

pytestmark = pytest.mark.e2e

PIA, QUINN = "Pia Timeoff", "Quinn Timeoff"


@dataclass
class Scene:
    tenant_id: uuid.UUID
    doctor_email: str
    patient_email: str
    zone: ZoneInfo
    monday: date  # ten weeks ahead
    sessions: dict[str, uuid.UUID] = field(default_factory=dict)
    patients: dict[str, uuid.UUID] = field(default_factory=dict)
    provider_id: uuid.UUID | None = None


@pytest.fixture
def e2e_engine(app_url: str) -> Iterator[sa.Engine]:
    """The e2e app's database (app_url created it), reached directly."""
    engine = make_engine(_db_url(f"{TEST_DB_NAME}_e2e"))
    yield engine
    engine.dispose()


def _at(day: date, hour: int, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(hour, 0), tzinfo=zone).astimezone(UTC)


@pytest.fixture
def scene(e2e_engine: sa.Engine) -> Scene:
    """A doctor working weekdays 09:00-17:00 at Harbor Downtown; ten weeks ahead, Monday 09:00 (Pia) and 10:00
    (Quinn) and Wednesday 09:00 (Pia) are booked; two days ago Pia had a completed session (10:00) and one the
    doctor has not marked (12:00); Quinn waits on the doctor's waitlist."""
    with UnitOfWork(system=True, engine=e2e_engine) as uow:
        tenant = uow.session.exec(select(Tenant).where(Tenant.slug == "harbor")).one()
    tag = secrets.token_hex(3)
    doctor_email, patient_email = f"dr.timeoff.{tag}@harbor.example", f"pia.{tag}@harbor.example"
    with UnitOfWork(Actor.system(tenant.id), engine=e2e_engine) as uow:
        s = uow.session
        clinic = s.exec(select(Clinic).where(Clinic.name == "Harbor Downtown")).one()
        zone = ZoneInfo(clinic.timezone)
        today = datetime.now(zone).date()
        monday = today - timedelta(days=today.weekday()) + timedelta(weeks=10)
        doctor = Provider(tenant_id=tenant.id, full_name=f"Dr. Tom Timeoff {tag}", title="PsyD", kind="therapist",
                          specialties=["Anxiety"], modalities=["in_person"])  # fmt: skip
        pia = Patient(tenant_id=tenant.id, full_name=PIA, email=patient_email, home_clinic_id=clinic.id)
        quinn = Patient(tenant_id=tenant.id, full_name=QUINN, email=f"quinn.{tag}@patients.example",
                        home_clinic_id=clinic.id)  # fmt: skip
        s.add_all([doctor, pia, quinn])
        uow.flush()
        s.add(ProviderClinic(tenant_id=tenant.id, provider_id=doctor.id, clinic_id=clinic.id))
        s.add_all(
            AvailabilityRule(
                tenant_id=tenant.id,
                provider_id=doctor.id,
                clinic_id=clinic.id,
                weekday=d,
                start_time=time(9),
                end_time=time(17),
            )
            for d in range(5)
        )
        for email, name, role, link in (
            (doctor_email, doctor.full_name, Role.DOCTOR, {"provider_id": doctor.id}),
            (patient_email, PIA, Role.PATIENT, {"patient_id": pia.id}),
        ):
            user = User(tenant_id=tenant.id, email=email, full_name=name, password_hash=hash_password(DEMO_PASSWORD))
            s.add(user)
            uow.flush()
            s.add(Membership(tenant_id=tenant.id, user_id=user.id, role=role, **link))

        def session(key: str, day: date, hour: int, patient: Patient, status: AppointmentStatus) -> None:
            start = _at(day, hour, zone)
            row = Appointment(tenant_id=tenant.id, provider_id=doctor.id, patient_id=patient.id,
                              clinic_id=clinic.id, start_at=start, end_at=start + timedelta(minutes=50),
                              status=status)  # fmt: skip
            s.add(row)
            uow.flush()
            sessions[key] = row.id

        sessions: dict[str, uuid.UUID] = {}
        session("mon_pia", monday, 9, pia, AppointmentStatus.BOOKED)
        session("mon_quinn", monday, 10, quinn, AppointmentStatus.BOOKED)
        session("wed_pia", monday + timedelta(days=2), 9, pia, AppointmentStatus.BOOKED)
        session("done", today - timedelta(days=2), 10, pia, AppointmentStatus.COMPLETED)
        session("unmarked", today - timedelta(days=2), 12, pia, AppointmentStatus.BOOKED)
        s.add(WaitlistEntry(tenant_id=tenant.id, patient_id=quinn.id, clinic_id=clinic.id, provider_id=doctor.id,
                            preferred_windows=[{"weekday": 4, "start": "09:00", "end": "12:00"}],
                            timezone=clinic.timezone, status=EntryStatus.WAITING))  # fmt: skip
        uow.commit()
    return Scene(tenant_id=tenant.id, doctor_email=doctor_email, patient_email=patient_email, zone=zone,
                 monday=monday, sessions=sessions, patients={PIA: pia.id, QUINN: quinn.id},
                 provider_id=doctor.id)  # fmt: skip


def _status(engine: sa.Engine, scene: Scene, key: str) -> str:
    with UnitOfWork(Actor.system(scene.tenant_id), engine=engine) as uow:
        row = uow.session.get(Appointment, scene.sessions[key])
        assert row is not None
        return str(row.status)


def _add_time_off(page: Page, day: date, start: str, end: str, reason: str) -> None:
    page.get_by_label("Start date").fill(day.isoformat())
    page.get_by_label("Start time").fill(start)
    page.get_by_label("End date").fill(day.isoformat())
    page.get_by_label("End time").fill(end)
    page.get_by_label("Reason (optional)").fill(reason)
    page.get_by_role("button", name="Add time off").click()


def test_time_off_over_booked_sessions_lists_them_and_cancels_them_with_the_patients_told(
    page: Page, app_url: str, scene: Scene, e2e_engine: sa.Engine
) -> None:
    sign_in(page, app_url, scene.doctor_email)
    expect(page).to_have_url(re.compile(r"/doctor/?$"))
    page.goto(f"{app_url}/doctor/availability")
    reason = f"Course {secrets.token_hex(2)}"
    _add_time_off(page, scene.monday, "08:00", "12:00", reason)

    # Not a toast that flashes by: a dialog names each session and asks.
    dialog = page.get_by_role("alertdialog")
    expect(dialog).to_contain_text("This time off covers 2 booked sessions")
    sessions = dialog.get_by_role("list", name="Sessions in the time off").get_by_role("listitem")
    expect(sessions).to_have_count(2)
    expect(sessions.nth(0)).to_contain_text(PIA)
    expect(sessions.nth(0)).to_contain_text(re.compile(r"09:00–09:50 E[SD]T"))
    expect(sessions.nth(1)).to_contain_text(QUINN)
    # Nothing is added while the doctor decides.
    expect(page.get_by_role("list", name="Upcoming time off")).to_have_count(0)
    assert _status(e2e_engine, scene, "mon_pia") == "booked"

    dialog.get_by_role("button", name="Cancel them and notify the patients").click()
    expect(dialog).to_have_count(0)
    listed = page.get_by_role("list", name="Upcoming time off").get_by_role("listitem").filter(has_text=reason)
    expect(listed).to_contain_text(f"{scene.monday:%a %d %b %Y}, 08:00–12:00")
    expect(page.get_by_text("2 sessions cancelled; the patients are notified.")).to_be_visible()

    assert [_status(e2e_engine, scene, k) for k in ("mon_pia", "mon_quinn", "wed_pia")] == [
        "cancelled", "cancelled", "booked"
    ]  # fmt: skip
    with UnitOfWork(Actor.system(scene.tenant_id), engine=e2e_engine) as uow:
        told = uow.session.exec(select(Notification).where(Notification.event_type == "appointment_cancelled")).all()
        assert set(scene.patients.values()) <= {n.patient_id for n in told}


def test_keeping_the_sessions_lists_them_under_the_time_off(
    page: Page, app_url: str, scene: Scene, e2e_engine: sa.Engine
) -> None:
    sign_in(page, app_url, scene.doctor_email)
    expect(page).to_have_url(re.compile(r"/doctor/?$"))
    page.goto(f"{app_url}/doctor/availability")
    wednesday = scene.monday + timedelta(days=2)
    reason = f"Away {secrets.token_hex(2)}"
    _add_time_off(page, wednesday, "08:00", "12:00", reason)

    dialog = page.get_by_role("alertdialog")
    expect(dialog).to_contain_text("This time off covers 1 booked session")
    expect(dialog.get_by_role("listitem")).to_contain_text(PIA)
    dialog.get_by_role("button", name="Keep them").click()
    expect(dialog).to_have_count(0)

    listed = page.get_by_role("list", name="Upcoming time off").get_by_role("listitem").filter(has_text=reason)
    expect(listed).to_contain_text(re.compile(r"Still booked during this time off: .*09:00–09:50 E[SD]T · " + PIA))
    assert _status(e2e_engine, scene, "wed_pia") == "booked"
    with UnitOfWork(Actor.system(scene.tenant_id), engine=e2e_engine) as uow:
        assert len(uow.session.exec(select(TimeOff).where(TimeOff.provider_id == scene.provider_id)).all()) == 1


def test_the_patient_history_says_completed_and_never_booked_for_a_past_session(
    page: Page, app_url: str, scene: Scene
) -> None:
    sign_in(page, app_url, scene.patient_email)
    expect(page).to_have_url(re.compile(r"/patient/?$"))
    page.goto(f"{app_url}/patient/appointments")
    history = page.get_by_role("table")
    expect(history.get_by_role("row").filter(has_text=re.compile(r"10:00–10:50 E[SD]T"))).to_contain_text("Completed")
    unmarked = history.get_by_role("row").filter(has_text=re.compile(r"12:00–12:50 E[SD]T"))
    expect(unmarked).to_contain_text(NOT_RECORDED)
    expect(unmarked).not_to_contain_text("Booked")


def test_the_console_shows_the_same_honest_estimate_as_the_patient_page(page: Page, app_url: str, scene: Scene) -> None:
    sign_in(page, app_url, scene.doctor_email)
    expect(page).to_have_url(re.compile(r"/doctor/?$"))
    page.goto(f"{app_url}/doctor/waitlist")
    card = page.get_by_role("listitem", name=QUINN)
    # No fills in this queue yet: the patient's page says so, and now the console does too (it was blank).
    expect(card.locator(".estimated-wait")).to_have_text("Estimated wait: Hard to estimate yet")
