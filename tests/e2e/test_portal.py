"""The portal in a real browser: sign-in per role, route guards, clinics management, tenant isolation."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from backend.seed import DEMO_PASSWORD
from tests.e2e.mfa_codes import needs_code, next_code

pytestmark = pytest.mark.e2e


def sign_in(page: Page, base: str, email: str, password: str = DEMO_PASSWORD) -> None:
    page.goto(f"{base}/login")
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("button[type=submit]")
    if needs_code(email) and password == DEMO_PASSWORD:
        # The demo admins use MFA: the second step asks for the code (tests/e2e/mfa_codes.py).
        page.wait_for_url(re.compile(r"/login/mfa"))
        page.fill("#code", next_code(email))
        page.click("button[type=submit]")


def test_patient_signs_in_and_sees_own_appointments(page: Page, app_url: str) -> None:
    sign_in(page, app_url, "alice@harbor.example")
    expect(page).to_have_url(re.compile(r"/patient/?$"))
    expect(page.get_by_role("heading", name="Hello, Alice Morgan")).to_be_visible()
    expect(page.get_by_role("heading", name="Upcoming appointments")).to_be_visible()
    # Seeded: Alice sees Dr. Rivera today, in the clinic's zone with the zone named.
    expect(page.get_by_text("Dr. Elena Rivera, MD").first).to_be_visible()
    expect(page.get_by_text(re.compile(r"\d\d:\d\d–\d\d:\d\d E[SD]T")).first).to_be_visible()
    # Another patient's name never shows on her page.
    expect(page.get_by_text("Ben Okoro")).to_have_count(0)


def test_doctor_signs_in_and_sees_todays_schedule(page: Page, app_url: str) -> None:
    sign_in(page, app_url, "dr.rivera@harbor.example")
    expect(page).to_have_url(re.compile(r"/doctor/?$"))
    expect(page.get_by_role("heading", name="Today's schedule")).to_be_visible()
    schedule = page.get_by_role("table").first
    expect(schedule.get_by_text("Alice Morgan")).to_be_visible()
    expect(schedule.get_by_text("Ben Okoro")).to_be_visible()


def test_admin_signs_in_and_sees_clinics_of_own_practice_only(page: Page, app_url: str) -> None:
    sign_in(page, app_url, "admin@harbor.example")
    expect(page).to_have_url(re.compile(r"/admin/?$"))
    expect(page.get_by_role("heading", name="Practice overview")).to_be_visible()
    expect(page.get_by_role("rowheader", name="Harbor Downtown")).to_be_visible()
    expect(page.get_by_role("rowheader", name="Harbor Westside")).to_be_visible()
    expect(page.get_by_text("Summit Boulder")).to_have_count(0)


def test_patient_opening_an_admin_url_is_told_whom_it_is_for_without_seeing_it(page: Page, app_url: str) -> None:
    sign_in(page, app_url, "ben@harbor.example")
    expect(page).to_have_url(re.compile(r"/patient/?$"))
    page.goto(f"{app_url}/admin/clinics")
    # No silent redirect: the page says whom it is for and links the patient's own home.
    expect(page.get_by_role("heading", name="This page is for practice admins")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/admin/clinics/?$"))
    expect(page.get_by_role("heading", name="Clinics")).to_have_count(0)
    expect(page.get_by_text("Harbor Downtown")).to_have_count(0)
    page.get_by_role("link", name="Go to your home").click()
    expect(page).to_have_url(re.compile(r"/patient/?$"))
    expect(page.get_by_role("heading", name="Hello, Ben Okoro")).to_be_visible()


def test_visitor_without_session_is_sent_to_login_and_back(page: Page, app_url: str) -> None:
    page.goto(f"{app_url}/doctor")
    expect(page).to_have_url(re.compile(r"/login/?\?next=(%2F|/)doctor"))
    page.fill("#email", "dr.chen@harbor.example")
    page.fill("#password", DEMO_PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(r"/doctor/?$"))


def test_bad_login_gets_a_clear_message_and_repeated_failures_are_slowed(page: Page, app_url: str) -> None:
    sign_in(page, app_url, "chloe@harbor.example", "not-her-password")
    expect(page.get_by_role("alert")).to_have_text("Incorrect email or password.")
    for _ in range(4):
        sign_in(page, app_url, "chloe@harbor.example", "not-her-password")
    # The sixth attempt waits, even with the right password.
    sign_in(page, app_url, "chloe@harbor.example")
    expect(page.get_by_role("alert")).to_contain_text("Too many failed attempts")
    expect(page).to_have_url(re.compile(r"/login"))


def test_sign_out_ends_the_session(page: Page, app_url: str) -> None:
    sign_in(page, app_url, "david@harbor.example")
    expect(page).to_have_url(re.compile(r"/patient/?$"))
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("You have been signed out.")).to_be_visible()
    page.goto(f"{app_url}/patient")
    expect(page).to_have_url(re.compile(r"/login"))


def test_admin_manages_clinics_with_form_errors_and_a_refused_delete(page: Page, app_url: str) -> None:
    sign_in(page, app_url, "admin@summit.example")
    page.goto(f"{app_url}/admin/clinics")
    expect(page.get_by_role("rowheader", name="Summit Boulder")).to_be_visible()

    page.get_by_role("button", name="Add clinic").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Name").fill("Summit Pearl Street")
    dialog.get_by_label("Time zone (IANA)").fill("Mars/Olympus")
    dialog.get_by_role("button", name="Save clinic").click()
    # The error is the field's own: announced (a live region), its description, and the field marked invalid.
    expect(dialog.locator("#err-clinic-timezone")).to_contain_text("Unknown time zone")
    expect(dialog.locator("#err-clinic-timezone")).to_have_attribute("aria-live", "assertive")
    zone = dialog.get_by_label("Time zone (IANA)")
    expect(zone).to_have_attribute("aria-invalid", "true")
    expect(zone).to_have_attribute("aria-describedby", "err-clinic-timezone")
    from tests.e2e.test_onboarding import shot  # here: that module imports this one

    shot(page, "admin-clinic-error")
    expect(page.get_by_role("rowheader", name="Summit Pearl Street")).to_have_count(0)

    dialog.get_by_label("Time zone (IANA)").fill("America/Denver")
    dialog.get_by_role("button", name="Save clinic").click()
    expect(page.get_by_role("rowheader", name="Summit Pearl Street")).to_be_visible()

    # A clinic with appointments cannot be deleted: the reason is shown and it stays.
    row = page.get_by_role("row").filter(has_text="Summit Boulder")
    row.get_by_role("button", name="Delete").click()
    confirm = page.get_by_role("alertdialog")
    confirm.get_by_role("button", name="Delete clinic").click()
    expect(confirm).to_contain_text("archive the clinic instead")
    confirm.get_by_role("button", name="Keep it").click()
    expect(page.get_by_role("rowheader", name="Summit Boulder")).to_be_visible()

    # The new, empty clinic can be deleted.
    page.get_by_role("row").filter(has_text="Summit Pearl Street").get_by_role("button", name="Delete").click()
    page.get_by_role("alertdialog").get_by_role("button", name="Delete clinic").click()
    expect(page.get_by_role("rowheader", name="Summit Pearl Street")).to_have_count(0)


def test_clinic_selector_filters_the_overview(page: Page, app_url: str) -> None:
    sign_in(page, app_url, "admin@harbor.example")
    expect(page.get_by_role("rowheader", name="Harbor Westside")).to_be_visible()
    page.get_by_role("combobox", name="Clinic").click()
    page.get_by_role("option", name="Harbor Downtown").click()
    expect(page.get_by_role("rowheader", name="Harbor Downtown")).to_be_visible()
    expect(page.get_by_role("rowheader", name="Harbor Westside")).to_have_count(0)
