"""Issue 11 item 3 in a real browser: a clinician's page load is recorded; the admin opens the Audit page from a
patient on the Waitlists page, sees who looked at that patient, and downloads the CSV (itself recorded)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from playwright.sync_api import Browser, Page, expect
from sqlmodel import select

from backend.audit.models import AccessEvent
from backend.db import UnitOfWork, make_engine
from backend.identity.models import Patient
from backend.notifications.models import Channel, Notification, NotificationStatus
from backend.types import utcnow
from tests.conftest import TEST_DB_NAME, _db_url
from tests.e2e.test_portal import sign_in

pytestmark = pytest.mark.e2e

SHOTS = Path("/tmp/shots/audit")  # noqa: S108 - where the screenshots are looked at


def _shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.fixture
def e2e_engine(app_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(_db_url(f"{TEST_DB_NAME}_e2e"))
    yield engine
    engine.dispose()


def _message_to(engine: sa.Engine, email: str) -> str:
    """A sent e-mail to the seeded patient with this address, written straight into the e2e database."""
    with UnitOfWork(system=True, engine=engine) as uow:
        patient = uow.session.exec(select(Patient).where(Patient.email == email)).one()
        note = Notification(
            tenant_id=patient.tenant_id,
            patient_id=patient.id,
            event_type="appointment.booked",
            channel=Channel.EMAIL,
            status=NotificationStatus.SENT,
            sent_at=utcnow(),
        )
        uow.session.add(note)
        uow.commit()
        return str(note.id)


def _exports(engine: sa.Engine) -> int:
    with UnitOfWork(system=True, engine=engine) as uow:
        return len(list(uow.session.exec(select(AccessEvent).where(AccessEvent.action == "audit.export"))))


def test_admin_sees_who_looked_at_a_patient_and_downloads_the_csv(
    browser: Browser, page: Page, app_url: str, e2e_engine: sa.Engine
) -> None:
    # The clinician opens their Today page: their schedule and the patients waiting for them are one recorded read.
    doctor_context = browser.new_context(viewport={"width": 1280, "height": 860})
    try:
        doctor = doctor_context.new_page()
        sign_in(doctor, app_url, "dr.rivera@harbor.example")
        expect(doctor.get_by_role("heading", name="Today's schedule")).to_be_visible()
    finally:
        doctor_context.close()

    sign_in(page, app_url, "admin@harbor.example")
    expect(page).to_have_url(re.compile(r"/admin/?$"))
    page.goto(f"{app_url}/admin/waitlists")
    # A patient waiting for Dr. Rivera: "Who looked" leads to the Audit page, filtered by that patient.
    row = page.locator("tr[data-entry-id]").filter(has_text="Rivera").first
    expect(row).to_be_visible()
    patient_name = row.locator("th p").first.inner_text().strip()
    _shot(page, "1-waitlists-who-looked")
    row.get_by_role("link", name=re.compile("Who looked")).click()

    expect(page).to_have_url(re.compile(r"/admin/audit\?patient="))
    expect(page.get_by_role("heading", name="Audit")).to_be_visible()
    expect(page.locator(".audit-patient-filter")).to_contain_text(f"Who looked at {patient_name}")
    trail = page.locator("tr[data-audit-id]")
    looked = trail.filter(has_text="Dr. Elena Rivera")
    expect(looked.first).to_be_visible()
    expect(looked.first).to_contain_text("Clinician")
    expect(looked.first).to_contain_text("page /doctor")
    _shot(page, "2-audit-who-looked")

    # The staff filter narrows to one person; the sidebar has the page too.
    page.locator("#au-staff").click()
    page.get_by_role("option", name="Dr. Elena Rivera").click()
    expect(page.locator("#au-staff")).to_contain_text("Dr. Elena Rivera")
    expect(trail.filter(has_text="Administrator")).to_have_count(0)
    expect(trail.first).to_contain_text("Dr. Elena Rivera")
    expect(page.get_by_role("link", name="Audit")).to_be_visible()

    before = _exports(e2e_engine)
    with page.expect_download() as download:
        page.get_by_role("button", name="Export CSV").click()
    path = download.value.path()
    assert download.value.suggested_filename.startswith("audit-access-")
    lines = Path(path).read_text(encoding="utf-8").strip().splitlines()
    assert lines[0].startswith("occurred_at,kind,actor_user_id,actor_name,actor_role,action,patient_ids")
    assert len(lines) >= 2 and all("Dr. Elena Rivera" in line for line in lines[1:])
    assert all(",doctor," in line for line in lines[1:])
    # The export itself is in the trail.
    assert _exports(e2e_engine) == before + 1
    page.goto(f"{app_url}/admin/audit")
    expect(page.get_by_role("heading", name="Audit")).to_be_visible()
    page.locator("#au-action").click()
    page.get_by_role("option", name="Audit export").click()
    expect(page.locator("#au-action")).to_contain_text("Audit export")
    expect(trail).to_have_count(1)
    expect(trail.first).to_contain_text("Audit export")
    expect(trail.first).to_contain_text("Morgan Blake")
    _shot(page, "3-audit-export-recorded")

    # The Outbox's patient card links to the same view (a message of this test's own, to Farah).
    note_id = _message_to(e2e_engine, "farah@harbor.example")
    page.goto(f"{app_url}/admin/outbox")
    message = page.locator(f'tr[data-notification-id="{note_id}"]')
    expect(message).to_be_visible()
    name = message.locator("th a").first.inner_text().strip()
    message.locator("th a").first.click()
    who = page.get_by_role("link", name="Who looked at this patient")
    expect(who).to_be_visible()
    _shot(page, "4-outbox-who-looked")
    who.click()
    expect(page).to_have_url(re.compile(r"/admin/audit\?patient="))
    expect(page.locator(".audit-patient-filter")).to_contain_text(f"Who looked at {name}")
    # The admin's own look at that patient's messages is in the trail.
    expect(page.locator("tr[data-audit-id]").filter(has_text="Messages").first).to_contain_text("Morgan Blake")
    _shot(page, "5-audit-from-outbox")
