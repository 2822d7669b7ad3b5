"""Payments in a real browser (fake payment mode, the embedded default): a patient accepts the fee policy, saves a
card, books, cancels late and sees the fee; the admin waives another patient's no-show fee.

The seeded database is shared with the other e2e tests: the fee policy is set on Summit with no card required to
book, and a fee is only ever written for a patient who accepted the policy (Felix and Dan, here), so the other
tests' bookings and cancellations are untouched. Set E2E_SHOTS_DIR to keep screenshots (desktop and 390 px).
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from playwright.sync_api import Browser, Page, expect
from sqlmodel import select

from backend.db import UnitOfWork, make_engine
from backend.identity.models import Patient, Provider, ProviderClinic
from backend.scheduling.models import Appointment
from backend.tenancy.models import Clinic, Tenant
from backend.types import utcnow
from tests.conftest import TEST_DB_NAME, _db_url
from tests.e2e.test_booking_pages import api_token, card_label, first_free
from tests.e2e.test_languages import _no_serious_violations, reads_in
from tests.e2e.test_portal import sign_in

pytestmark = pytest.mark.e2e

SHOTS = Path(os.environ["E2E_SHOTS_DIR"]) if os.environ.get("E2E_SHOTS_DIR") else None


def shot(page: Page, name: str, *, phone: bool = True) -> None:
    """Screenshots of the page at its width and at 390 px (kept only when E2E_SHOTS_DIR is set)."""
    if SHOTS is None:
        return
    SHOTS.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size or {"width": 1280, "height": 860}
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    if phone:
        page.set_viewport_size({"width": 390, "height": 844})
        page.screenshot(path=str(SHOTS / f"{name}-390.png"), full_page=True)
        page.set_viewport_size(size)


@pytest.fixture
def e2e_engine(app_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(_db_url(f"{TEST_DB_NAME}_e2e"))
    yield engine
    engine.dispose()


def _auth(base: str, email: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_token(base, email)}"}


def _appointment_near(engine: sa.Engine, patient_email: str, provider_name: str, hours: range) -> tuple[uuid.UUID, str]:
    """An appointment for the patient `hours` from now (the first hour the provider has free), written directly:
    the booking rules would not offer a time this near. Returns its id and how My appointments names it."""
    with UnitOfWork(system=True, engine=engine) as uow:
        s = uow.session
        tenant = s.exec(select(Tenant).where(Tenant.slug == "summit")).one()
        patient = s.exec(select(Patient).where(Patient.tenant_id == tenant.id, Patient.email == patient_email)).one()
        provider = s.exec(
            select(Provider).where(Provider.tenant_id == tenant.id, Provider.full_name == provider_name)
        ).one()
        link = s.exec(select(ProviderClinic).where(ProviderClinic.provider_id == provider.id)).first()
        assert link is not None
        clinic = s.get(Clinic, link.clinic_id)
        assert clinic is not None
        zone = clinic.timezone
        base = utcnow().replace(minute=0, second=0, microsecond=0)
        for hour in hours:
            start = base + timedelta(hours=hour, minutes=7)
            row = Appointment(
                tenant_id=tenant.id,
                provider_id=provider.id,
                patient_id=patient.id,
                clinic_id=link.clinic_id,
                start_at=start,
                end_at=start + timedelta(minutes=50),
            )
            s.add(row)
            try:
                s.commit()
            except sa.exc.IntegrityError:
                s.rollback()  # the provider is busy then: the next hour
                continue
            return row.id, card_label(start.isoformat(), (start + timedelta(minutes=50)).isoformat(), zone)
    raise AssertionError(f"no free hour for {provider_name} in {hours}")


def _book_with_alvarez(page: Page, weeks_ahead: int) -> None:
    page.get_by_role("link", name="Find care").first.click()
    page.get_by_label("Name").fill("Alvarez")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("article", name=re.compile("Sofia Alvarez")).get_by_role("link", name="See times").click()
    week = page.locator("#week-label")
    for _ in range(weeks_ahead):
        shown = week.inner_text()
        page.get_by_role("button", name="Next week").click()
        expect(week).not_to_have_text(shown)
    first_free(page).click()
    booking = page.get_by_role("dialog")
    booking.get_by_role("button", name="Confirm booking").click()
    expect(booking.get_by_text("Appointment confirmed")).to_be_visible()


def test_patient_saves_a_card_books_cancels_late_sees_the_fee_and_staff_waive(
    page: Page, app_url: str, e2e_engine: sa.Engine
) -> None:
    admin = _auth(app_url, "admin@summit.example")
    policy = {
        "late_cancel_fee_minor": 2500,
        "no_show_fee_minor": 4000,
        "late_cancel_window_minutes": 1440,
        "card_required": False,
        "policy_text": "Cancelling within 24 hours of your appointment, or not coming, costs the fee below.",
    }
    httpx.put(f"{app_url}/api/v1/payments/policy", json=policy, headers=admin, timeout=20).raise_for_status()

    # The patient reads the policy, accepts it and saves a (test) card.
    sign_in(page, app_url, "felix@summit.example")
    expect(page).to_have_url(re.compile(r"/patient/?$"))
    page.get_by_role("link", name="Payments").first.click()
    expect(page.get_by_text("Cancelling within 24 hours of the start")).to_be_visible()
    page.get_by_role("button", name="I accept this fee policy").click()
    expect(page.get_by_text("Accepted on")).to_be_visible()
    page.get_by_role("button", name="Save a card").click()
    expect(page.get_by_text("Visa ending in 4242")).to_be_visible()
    shot(page, "patient-card-saved")

    # Books (the page), then cancels an appointment that starts in a few hours: late, so the fee follows.
    _book_with_alvarez(page, weeks_ahead=9)
    near, label = _appointment_near(e2e_engine, "felix@summit.example", "Sofia Alvarez", range(3, 20))
    page.goto(f"{app_url}/patient/appointments")
    card = page.get_by_role("region", name="Upcoming").get_by_role("article", name=label)
    expect(card).to_be_visible()
    card.get_by_role("button", name="Cancel").click()
    dialog = page.get_by_role("alertdialog")
    expect(dialog).to_contain_text("late cancellation")
    dialog.get_by_role("button", name="Cancel appointment").click()
    expect(dialog).to_have_count(0)
    page.get_by_role("link", name="Payments").first.click()
    fee = page.get_by_role("row").filter(has_text="Late cancellation fee")
    expect(fee).to_contain_text("$25.00")
    expect(fee).to_contain_text("Paid")
    shot(page, "patient-fee-charged")
    with UnitOfWork(system=True, engine=e2e_engine) as uow:
        cancelled = uow.session.get(Appointment, near)
        assert cancelled is not None and cancelled.status == "late_cancelled"

    # Another patient accepted the policy but keeps no card: their no-show fee is not charged; the admin waives it.
    dan = _auth(app_url, "dan@summit.example")
    shown = httpx.get(f"{app_url}/api/v1/payments/policy", headers=dan, timeout=20).json()
    httpx.post(
        f"{app_url}/api/v1/payments/policy/{shown['id']}/accept",
        json={"version": shown["version"]},
        headers=dan,
        timeout=20,
    ).raise_for_status()
    missed, _ = _appointment_near(e2e_engine, "dan@summit.example", "Sofia Alvarez", range(-3, -30, -1))
    httpx.post(
        f"{app_url}/api/v1/appointments/{missed}/attendance", json={"outcome": "no_show"}, headers=admin, timeout=20
    ).raise_for_status()

    page.context.clear_cookies()
    sign_in(page, app_url, "admin@summit.example")
    expect(page).to_have_url(re.compile(r"/admin/?$"))
    page.get_by_role("link", name="Payments").first.click()
    row = page.get_by_role("row").filter(has_text="Dan Whitaker").filter(has_text="No-show fee")
    expect(row).to_contain_text("Due")  # owed, not charged: no card on file
    expect(row).to_contain_text("no card on file")
    shot(page, "admin-payments")
    row.get_by_role("button", name="Waive").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Reason (optional)").fill("First missed session")
    shot(page, "admin-waive-dialog", phone=False)
    dialog.get_by_role("button", name="Waive fee").click()
    expect(row).to_contain_text("Waived")
    expect(row).to_contain_text("First missed session")
    shot(page, "admin-fee-waived")
    paid = page.get_by_role("row").filter(has_text="Felix Wagner").filter(has_text="Late cancellation fee")
    paid.get_by_role("button", name="Refund").click()
    expect(paid).to_contain_text("Refunded")

    # The doctor sees the fees of their own appointments.
    page.context.clear_cookies()
    sign_in(page, app_url, "sofia.alvarez@summit.example")
    page.get_by_role("link", name="Fees").first.click()
    # Each patient's fee row (the page also lists their appointments, Dan's booking of this test among them).
    no_show = page.get_by_role("row").filter(has_text="Dan Whitaker").filter(has_text="No-show fee")
    expect(no_show).to_contain_text("Waived")
    late = page.get_by_role("row").filter(has_text="Felix Wagner").filter(has_text="Late cancellation fee")
    expect(late).to_contain_text("Refunded")
    shot(page, "doctor-fees")

    # The admin sets a session price on the page. An attended session costs it; the price is a new version of the
    # policy, which Felix has not accepted: the session is owed ("Due") and not charged. He reads it in Spanish too.
    page.context.clear_cookies()
    sign_in(page, app_url, "admin@summit.example")
    page.get_by_role("link", name="Payments").first.click()
    price = page.get_by_label("Session price (self-pay)")
    expect(price).to_have_value("0.00")
    price.fill("120")
    page.get_by_role("button", name="Save policy").click()
    expect(page.get_by_text(re.compile(r"Fee policy saved \(version \d+\)"))).to_be_visible()
    try:
        seen, _ = _appointment_near(e2e_engine, "felix@summit.example", "Sofia Alvarez", range(-4, -40, -1))
        httpx.post(
            f"{app_url}/api/v1/appointments/{seen}/attendance", json={"outcome": "completed"}, headers=admin, timeout=20
        ).raise_for_status()
        page.context.clear_cookies()
        sign_in(page, app_url, "felix@summit.example")
        page.get_by_role("link", name="Payments").first.click()
        session = page.get_by_role("row").filter(has_text="Session fee")
        expect(session).to_contain_text("$120.00")
        expect(session).to_contain_text("Due")
        expect(session).to_contain_text("fee policy not accepted")
        expect(page.get_by_role("button", name="I accept this fee policy")).to_be_visible()
        shot(page, "patient-payments-en")
        reads_in(app_url, "felix@summit.example", "es")
        try:
            page.reload()
            expect(page.get_by_role("heading", name="Pagos", exact=True)).to_be_visible()
            expect(page.get_by_role("heading", name="Política de cargos")).to_be_visible()
            expect(page.get_by_text("Cada sesión a la que asista (pago particular)")).to_be_visible()
            session = page.get_by_role("row").filter(has_text="Precio de la sesión")
            expect(session).to_contain_text("Pendiente de pago")
            expect(session).to_contain_text("120,00")
            expect(page.get_by_role("button", name="Acepto esta política de cargos")).to_be_visible()
            expect(page.get_by_text("Visa terminada en 4242")).to_be_visible()
            assert page.evaluate("document.documentElement.lang") == "es"
            shot(page, "patient-payments-es")
        finally:
            reads_in(app_url, "felix@summit.example", "en")
    finally:
        httpx.put(f"{app_url}/api/v1/payments/policy", json={"self_pay_minor": 0}, headers=admin, timeout=20)


def test_patient_and_admin_payments_pages_pass_axe(browser: Browser, app_url: str) -> None:
    """axe at desktop and phone width on the patient's page (English and Spanish) and the admin's."""
    # The CSP refuses the inline script axe is run from: this context bypasses it (tests/e2e/axe.py).
    ctx = browser.new_context(viewport={"width": 1280, "height": 860}, bypass_csp=True)
    ctx.set_default_timeout(15_000)
    page = ctx.new_page()
    try:
        sign_in(page, app_url, "felix@summit.example")
        page.goto(f"{app_url}/patient/payments")
        expect(page.get_by_role("heading", name="Card on file")).to_be_visible()
        _no_serious_violations(page, "patient payments")
        reads_in(app_url, "felix@summit.example", "es")
        try:
            page.reload()
            expect(page.get_by_role("heading", name="Tarjeta registrada")).to_be_visible()
            _no_serious_violations(page, "patient payments (es)")
        finally:
            reads_in(app_url, "felix@summit.example", "en")
        page.context.clear_cookies()
        sign_in(page, app_url, "admin@summit.example")
        page.goto(f"{app_url}/admin/payments")
        expect(page.get_by_label("Session price (self-pay)")).to_be_visible()
        _no_serious_violations(page, "admin payments")
    finally:
        ctx.close()
