"""The doctor's Today page (issue 10, item 2): every session of the day with its status, a completed one included;
a slot held for a waitlist offer shows as held, and neither "Coming up" nor "Next 7 days" counts it as booked.

"Today" is the wall clock's: the scene is written straight into the e2e database (the API refuses past times), at
00:00 and 23:00 of today's date in the clinic's zone, so it is today's whatever the hour the test runs. The doctor
is one of this test's own, added to Harbor for it: no other e2e test reads or changes their schedule.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from playwright.sync_api import Locator, Page, expect
from sqlmodel import select

from backend.db import UnitOfWork, make_engine
from backend.identity.models import Membership, Patient, Provider, ProviderClinic, User
from backend.identity.security import hash_password
from backend.scheduling.models import Appointment, AppointmentStatus
from backend.seed import DEMO_PASSWORD
from backend.tenancy.context import Actor, Role
from backend.tenancy.models import Clinic, Tenant
from backend.waitlist.models import EntryStatus, OfferStatus, WaitlistEntry, WaitlistOffer
from portal.state.doctor import HELD_LABEL
from tests.conftest import TEST_DB_NAME, _db_url
from tests.e2e.test_portal import sign_in

pytestmark = pytest.mark.e2e

DOCTOR_NAME = "Dr. Tessa Today"
COMPLETED_PATIENT = "Carl Completed"
BOOKED_PATIENT = "Bea Tomorrow"
HELD_FOR = "Hal Holdfor"  # waits; never named on the doctor's page until he takes the slot


@dataclass
class Scene:
    email: str
    zone: ZoneInfo
    today: date


@pytest.fixture
def e2e_engine(app_url: str) -> Iterator[sa.Engine]:
    """The e2e app's database (app_url created it), reached directly."""
    engine = make_engine(_db_url(f"{TEST_DB_NAME}_e2e"))
    yield engine
    engine.dispose()


def _at(day: date, hour: int, zone: ZoneInfo, minutes: int = 0) -> datetime:
    return datetime.combine(day, time(hour, 0), tzinfo=zone).astimezone(UTC) + timedelta(minutes=minutes)


@pytest.fixture
def scene(e2e_engine: sa.Engine) -> Scene:
    """A doctor of Harbor Downtown with, today: a completed session (00:00) and a slot held for a waitlist offer
    (23:00); tomorrow: one booked session."""
    with UnitOfWork(system=True, engine=e2e_engine) as uow:
        tenant = uow.session.exec(select(Tenant).where(Tenant.slug == "harbor")).one()
    system = Actor.system(tenant.id)
    email = f"dr.today.{secrets.token_hex(3)}@harbor.example"
    with UnitOfWork(system, engine=e2e_engine) as uow:
        s = uow.session
        clinic = s.exec(select(Clinic).where(Clinic.name == "Harbor Downtown")).one()
        zone = ZoneInfo(clinic.timezone)
        today = datetime.now(zone).date()
        doctor = Provider(tenant_id=tenant.id, full_name=DOCTOR_NAME, title="PsyD", kind="therapist",
                          specialties=["Anxiety"], modalities=["in_person"])  # fmt: skip
        patients = {
            name: Patient(
                tenant_id=tenant.id,
                full_name=name,
                email=f"{uuid.uuid4().hex[:8]}@patients.example",
                home_clinic_id=clinic.id,
            )
            for name in (COMPLETED_PATIENT, BOOKED_PATIENT, HELD_FOR)
        }
        s.add_all([doctor, *patients.values()])
        uow.flush()
        s.add(ProviderClinic(tenant_id=tenant.id, provider_id=doctor.id, clinic_id=clinic.id))
        user = User(tenant_id=tenant.id, email=email, full_name=DOCTOR_NAME, password_hash=hash_password(DEMO_PASSWORD))
        s.add(user)
        uow.flush()
        s.add(Membership(tenant_id=tenant.id, user_id=user.id, role=Role.DOCTOR, provider_id=doctor.id))

        def session_at(day: date, hour: int, patient: str, status: AppointmentStatus) -> Appointment:
            appointment = Appointment(
                tenant_id=tenant.id, provider_id=doctor.id, patient_id=patients[patient].id, clinic_id=clinic.id,
                start_at=_at(day, hour, zone), end_at=_at(day, hour, zone, minutes=50), modality="in_person",
                status=status,
            )  # fmt: skip
            s.add(appointment)
            return appointment

        session_at(today, 0, COMPLETED_PATIENT, AppointmentStatus.COMPLETED)
        session_at(today + timedelta(days=1), 12, BOOKED_PATIENT, AppointmentStatus.BOOKED)
        # The held slot: an offer to a waiting patient that he has not answered yet (live for two hours).
        held = session_at(today, 23, HELD_FOR, AppointmentStatus.HELD)
        held.hold_expires_at = datetime.now(UTC) + timedelta(hours=2)
        entry = WaitlistEntry(tenant_id=tenant.id, patient_id=patients[HELD_FOR].id, clinic_id=clinic.id,
                              provider_id=doctor.id, preferred_windows=[], timezone=clinic.timezone,
                              status=EntryStatus.OFFERED)  # fmt: skip
        s.add(entry)
        uow.flush()
        s.add(
            WaitlistOffer(
                tenant_id=tenant.id,
                entry_id=entry.id,
                appointment_id=held.id,
                provider_id=doctor.id,
                clinic_id=clinic.id,
                slot_start=held.start_at,
                slot_end=held.end_at,
                status=OfferStatus.PENDING,
                kind="invite",
                expires_at=held.hold_expires_at,
            )
        )
        uow.commit()
    return Scene(email=email, zone=zone, today=today)


def _stat(page: Page, label: str) -> Locator:
    """The number a stat card shows under its label."""
    return page.locator(".rt-Card").filter(has_text=label).get_by_role("heading")


def test_today_shows_completed_and_held_sessions_and_counts_only_booked(page: Page, app_url: str, scene: Scene) -> None:
    sign_in(page, app_url, scene.email)
    expect(page).to_have_url(re.compile(r"/doctor/?$"))
    expect(page.get_by_role("heading", name="Today's schedule")).to_be_visible()
    today = page.get_by_role("table").first

    # The completed session is still on today's schedule, with its status.
    completed = today.get_by_role("row").filter(has_text=COMPLETED_PATIENT)
    expect(completed).to_have_count(1)
    expect(completed).to_contain_text(re.compile(r"00:00–00:50 E[SD]T"))
    expect(completed).to_contain_text("Completed")

    # The held slot shows as held for an offer: not booked, and whom it is held for is not named.
    held = today.get_by_role("row").filter(has_text=re.compile(r"23:00–23:50 E[SD]T"))
    expect(held).to_have_count(1)
    expect(held).to_contain_text(HELD_LABEL)
    expect(held).to_contain_text("Held slot")
    expect(held).not_to_contain_text("Booked")
    expect(page.get_by_text(HELD_FOR)).to_have_count(0)

    # Two sessions today; the next 7 days hold one booked session (tomorrow's), the held offer is not counted.
    expect(today.locator("tbody").get_by_role("row")).to_have_count(2)
    expect(_stat(page, "Sessions today")).to_have_text("2")
    expect(_stat(page, "Next 7 days")).to_have_text("1")

    # Coming up lists tomorrow's booked session only.
    coming = page.get_by_role("table").nth(1)
    expect(coming.locator("tbody").get_by_role("row")).to_have_count(1)
    expect(coming).to_contain_text(BOOKED_PATIENT)
    expect(coming).to_contain_text("Booked")
    expect(coming).not_to_contain_text(HELD_LABEL)
