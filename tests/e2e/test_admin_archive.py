"""Issue 10 item 5 in a real browser: archiving a clinic asks first, with what it affects (upcoming appointments
kept, the waitlist moved or closed as the admin chooses), and leaves no page broken: its provider shows no blank
clinic and no join form for nowhere.

The scene is the test's own: two fresh clinics created through the API (one to archive, one to move the
waitlist to, so no other test's waitlist receives anyone), a doctor who works only at the first, and patients of
its own, written straight into the e2e database. No other e2e test reads or changes them.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
import sqlalchemy as sa
from playwright.sync_api import Page, expect
from sqlmodel import select

from backend.db import UnitOfWork, make_engine
from backend.identity.models import Membership, Patient, Provider, ProviderClinic, User
from backend.identity.security import hash_password
from backend.notifications.models import Notification
from backend.scheduling.models import Appointment, AvailabilityRule
from backend.seed import DEMO_PASSWORD
from backend.tenancy.context import Actor, Role
from backend.tenancy.models import Clinic, Tenant
from backend.waitlist.models import EntryStatus, WaitlistEntry
from tests.conftest import TEST_DB_NAME, _db_url
from tests.e2e.mfa_codes import next_code
from tests.e2e.test_portal import sign_in

pytestmark = pytest.mark.e2e


@dataclass
class Scene:
    tenant_id: uuid.UUID
    clinic: str  # the clinic to archive
    annex: str  # where its waitlist moves
    annex_id: uuid.UUID
    doctor: str
    doctor_id: uuid.UUID
    patient_email: str
    appointment_id: uuid.UUID
    entry_ids: list[uuid.UUID]


@pytest.fixture
def e2e_engine(app_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(_db_url(f"{TEST_DB_NAME}_e2e"))
    yield engine
    engine.dispose()


def _create_clinic(base: str, headers: dict[str, str], name: str, zone: str) -> uuid.UUID:
    response = httpx.post(f"{base}/api/v1/clinics", json={"name": name, "timezone": zone}, headers=headers, timeout=10)
    response.raise_for_status()
    return uuid.UUID(response.json()["id"])


@pytest.fixture
def scene(app_url: str, e2e_engine: sa.Engine) -> Scene:
    login = {"email": "admin@harbor.example", "password": DEMO_PASSWORD, "totp": next_code("admin@harbor.example")}
    token = httpx.post(f"{app_url}/api/v1/auth/token", json=login, timeout=10)
    token.raise_for_status()
    admin = {"Authorization": f"Bearer {token.json()['access_token']}"}
    tag = secrets.token_hex(3)
    clinic, annex = f"Harbor Archive {tag}", f"Harbor Annex {tag}"
    clinic_id = _create_clinic(app_url, admin, clinic, "America/New_York")
    annex_id = _create_clinic(app_url, admin, annex, "America/Chicago")
    doctor_name = f"Dr. Ada Archive {tag}"
    patient_email = f"remy.{tag}@harbor.example"
    with UnitOfWork(system=True, engine=e2e_engine) as uow:
        tenant = uow.session.exec(select(Tenant).where(Tenant.slug == "harbor")).one()
    with UnitOfWork(Actor.system(tenant.id), engine=e2e_engine) as uow:
        s = uow.session
        doctor = Provider(tenant_id=tenant.id, full_name=doctor_name, title="PsyD", kind="therapist",
                          specialties=["Anxiety"], modalities=["in_person"])  # fmt: skip
        remy = Patient(tenant_id=tenant.id, full_name="Remy Archive", email=patient_email, home_clinic_id=clinic_id)
        sol = Patient(tenant_id=tenant.id, full_name="Sol Archive", email=f"sol.{tag}@patients.example")
        s.add_all([doctor, remy, sol])
        uow.flush()
        s.add(ProviderClinic(tenant_id=tenant.id, provider_id=doctor.id, clinic_id=clinic_id))
        s.add_all(
            AvailabilityRule(
                tenant_id=tenant.id,
                provider_id=doctor.id,
                clinic_id=clinic_id,
                weekday=d,
                start_time=time(9),
                end_time=time(17),
            )
            for d in range(5)
        )
        user = User(tenant_id=tenant.id, email=patient_email, full_name="Remy Archive",
                    password_hash=hash_password(DEMO_PASSWORD))  # fmt: skip
        s.add(user)
        uow.flush()
        s.add(Membership(tenant_id=tenant.id, user_id=user.id, role=Role.PATIENT, patient_id=remy.id))
        zone = ZoneInfo("America/New_York")
        today = datetime.now(zone).date()
        day = today - timedelta(days=today.weekday()) + timedelta(weeks=10, days=1)
        start = datetime.combine(day, time(10), tzinfo=zone).astimezone(UTC)
        appointment = Appointment(tenant_id=tenant.id, provider_id=doctor.id, patient_id=remy.id, clinic_id=clinic_id,
                                  start_at=start, end_at=start + timedelta(minutes=50))  # fmt: skip
        windows = [{"weekday": 1, "start": "09:00", "end": "12:00"}]
        entries = [
            WaitlistEntry(tenant_id=tenant.id, patient_id=remy.id, clinic_id=clinic_id, provider_id=doctor.id,
                          preferred_windows=windows, timezone="America/New_York", status=EntryStatus.WAITING),
            WaitlistEntry(tenant_id=tenant.id, patient_id=sol.id, clinic_id=clinic_id, provider_id=None,
                          preferred_windows=windows, timezone="America/New_York", status=EntryStatus.WAITING),
        ]  # fmt: skip
        s.add_all([appointment, *entries])
        uow.commit()
    return Scene(tenant_id=tenant.id, clinic=clinic, annex=annex, annex_id=annex_id, doctor=doctor_name,
                 doctor_id=doctor.id, patient_email=patient_email, appointment_id=appointment.id,
                 entry_ids=[e.id for e in entries])  # fmt: skip


def test_archive_asks_with_its_effects_moves_the_waitlist_and_leaves_no_blank_clinic(
    page: Page, app_url: str, scene: Scene, e2e_engine: sa.Engine
) -> None:
    sign_in(page, app_url, "admin@harbor.example")
    expect(page).to_have_url(re.compile(r"/admin/?$"))
    page.goto(f"{app_url}/admin/clinics")
    row = page.get_by_role("row").filter(has_text=scene.clinic)
    expect(row).to_contain_text("Open")
    row.get_by_role("button", name="Archive").click()

    # One click no longer archives: a dialog says what it affects and asks about the waitlist.
    dialog = page.get_by_role("alertdialog")
    expect(dialog).to_contain_text(f"Archive {scene.clinic}?")
    expect(dialog.locator("#archive-appointments")).to_have_text("1 upcoming appointment is kept as booked.")
    expect(dialog.locator("#archive-waitlist")).to_contain_text("2 patients are on its waitlist")
    dialog.get_by_role("combobox", name="Move the waitlist to").click()
    page.get_by_role("option", name=scene.annex).click()
    expect(dialog).to_contain_text(
        f"1 of them waits for a provider who does not work at {scene.annex}: that entry will wait for any "
        "provider there."
    )
    dialog.get_by_role("button", name="Archive clinic").click()
    expect(dialog).to_have_count(0)
    expect(row).to_contain_text("Archived")

    with UnitOfWork(Actor.system(scene.tenant_id), engine=e2e_engine) as uow:
        s = uow.session
        archived = s.exec(select(Clinic).where(Clinic.name == scene.clinic)).one()
        assert archived.archived_at is not None
        kept = s.get(Appointment, scene.appointment_id)
        assert kept is not None and kept.status == "booked"
        moved = [s.get(WaitlistEntry, entry_id) for entry_id in scene.entry_ids]
        assert [(e.status, e.clinic_id, e.provider_id) for e in moved if e is not None] == [
            (EntryStatus.WAITING, scene.annex_id, None)
        ] * 2
        told = s.exec(select(Notification).where(Notification.event_type == "waitlist_entry_moved")).all()
        assert {e.patient_id for e in moved if e is not None} <= {n.patient_id for n in told}

    # The patient: no card with a blank clinic for the doctor, no join form for a clinic that is gone, and the
    # waitlist entry shows where it now is.
    patient = page.context.browser.new_context(viewport={"width": 1280, "height": 860})  # type: ignore[union-attr]
    try:
        mine = patient.new_page()
        sign_in(mine, app_url, scene.patient_email)
        expect(mine).to_have_url(re.compile(r"/patient/?$"))
        mine.goto(f"{app_url}/patient/find")
        expect(mine.get_by_role("article").first).to_be_visible()
        expect(mine.get_by_role("article", name=re.compile(re.escape(scene.doctor)))).to_have_count(0)
        mine.goto(f"{app_url}/patient/waitlist/join?provider_id={scene.doctor_id}")
        expect(mine.get_by_role("combobox", name="Clinic")).to_be_visible()
        expect(mine.get_by_text(scene.doctor)).to_have_count(0)
        expect(mine.get_by_text(scene.clinic)).to_have_count(0)
        mine.goto(f"{app_url}/patient/waitlist")
        expect(mine.get_by_text(f"Any provider at {scene.annex}").first).to_be_visible()
    finally:
        patient.close()
