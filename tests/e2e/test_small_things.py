"""Small things a clinic expects (issue 12, part 5), in the real app: a 404 page with a way home, a page for another
role saying whom it is for, the practice's Terms and Privacy texts (plain text, never HTML), and the 24-hour rule
shown before the patient clicks."""

from __future__ import annotations

import re
import uuid

import httpx
import psycopg
from playwright.sync_api import Browser, Page, expect

from tests.conftest import TEST_DB_NAME, _db_url
from tests.e2e.test_onboarding import shot
from tests.e2e.test_portal import sign_in

XSS = '<img src="x" onerror="window.__xss = 1">'
# Where an upcoming appointment stands under the default 24-hour window.
STANDING = r"^(Free to cancel or move online until .*\(24 hours before\)|Less than 24 hours to go)"


def _owner_db() -> str:
    return _db_url(f"{TEST_DB_NAME}_e2e").replace("postgresql+psycopg://", "postgresql://", 1)


def _toasts(page: Page) -> list[str]:
    return [t.strip() for t in page.locator("[data-sonner-toast]").all_inner_texts()]


# -- 404 ------------------------------------------------------------------------------------------------------


def test_an_unknown_address_gets_the_apps_404_page_with_a_way_home(page: Page, app_url: str) -> None:
    response = httpx.get(f"{app_url}/no/such/page")
    assert response.status_code == 404
    page.goto(f"{app_url}/no/such/page")
    expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
    expect(page).to_have_title(re.compile("Page not found"))
    # Not signed in: the way on is the sign-in page, one control (a link drawn as a button, not a button in a link).
    expect(page.get_by_role("link", name="Go to your home")).to_have_count(0)
    expect(page.locator("a button, button a")).to_have_count(0)
    shot(page, "404-visitor")
    page.get_by_role("link", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/login/?"))

    sign_in(page, app_url, "chloe@harbor.example")
    expect(page).to_have_url(re.compile(r"/patient/?$"))
    page.goto(f"{app_url}/patient/no-such-page")
    expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
    # Signed in: their own home, and no "Sign in" (they are).
    expect(page.get_by_role("link", name="Go to your home")).to_have_attribute("href", re.compile(r"/patient/?$"))
    expect(page.get_by_role("link", name="Sign in")).to_have_count(0)
    expect(page.locator("a button, button a")).to_have_count(0)
    shot(page, "404-signed-in")
    page.get_by_role("link", name="Go to your home").click()
    expect(page).to_have_url(re.compile(r"/patient/?$"))
    # Chloe reads her pages in Spanish (her preference in the demo data).
    expect(page.get_by_role("heading", name=re.compile("Hola, Chloe"))).to_be_visible()


# -- a page for another role ----------------------------------------------------------------------------------


def test_a_page_for_another_role_says_whom_it_is_for_and_links_home(page: Page, app_url: str) -> None:
    sign_in(page, app_url, "dr.chen@harbor.example")
    expect(page).to_have_url(re.compile(r"/doctor/?$"))
    for path, audience in (("/patient/appointments", "patients"), ("/admin/outbox", "practice admins")):
        page.goto(f"{app_url}{path}")
        expect(page.get_by_role("heading", name=f"This page is for {audience}")).to_be_visible()
        expect(page.get_by_text(re.compile(r"You are signed in as .*Clinician"))).to_be_visible()
        expect(page).to_have_url(re.compile(re.escape(path) + "/?$"))  # no redirect
        # Nothing of the page itself, and no false "session ended" toast from its own load.
        expect(page.get_by_role("heading", name=re.compile("My appointments|Outbox"))).to_have_count(0)
        assert not [t for t in _toasts(page) if "session" in t.lower()]
    page.get_by_role("link", name="Go to your home").click()
    expect(page).to_have_url(re.compile(r"/doctor/?$"))
    expect(page.get_by_role("heading", name="This page is for", exact=False)).to_have_count(0)


def test_an_admin_on_a_doctor_page_is_told_it_is_for_clinic_staff(page: Page, app_url: str) -> None:
    sign_in(page, app_url, "admin@summit.example")
    expect(page).to_have_url(re.compile(r"/admin/?$"))
    page.goto(f"{app_url}/doctor/schedule")
    expect(page.get_by_role("heading", name="This page is for clinic staff")).to_be_visible()
    expect(page.get_by_role("link", name="Go to your home")).to_have_attribute("href", re.compile(r"/admin/?$"))
    expect(page.get_by_role("main").locator("a button, button a")).to_have_count(0)  # one control, one tab stop
    shot(page, "wrong-role")


# -- Terms and Privacy ----------------------------------------------------------------------------------------


def test_the_admin_sets_the_terms_and_everyone_reads_them_as_plain_text(
    page: Page, browser: Browser, app_url: str
) -> None:
    sign_in(page, app_url, "admin@harbor.example")
    expect(page).to_have_url(re.compile(r"/admin/?$"))
    page.goto(f"{app_url}/admin/texts")
    terms = page.get_by_role("textbox", name="Terms of use (plain text)")
    expect(terms).to_contain_text("Harbor Mental Health")  # the default, naming the practice
    expect(page.get_by_text("/terms?practice=harbor")).to_be_visible()
    terms.fill(f"Harbor's own terms, line one.\n\n{XSS}\n\nBring your insurance card.")
    page.get_by_role("button", name="Save terms of use").click()
    expect(page.get_by_role("status").filter(has_text="Saved.")).to_be_visible()
    try:
        # A visitor, by the practice's short name: the text as typed, the markup shown and never run.
        visitor = browser.new_context(viewport={"width": 390, "height": 844})
        try:
            other = visitor.new_page()
            other.goto(f"{app_url}/terms?practice=harbor")
            main = other.get_by_role("main")
            expect(main.get_by_role("heading", name="Terms of use")).to_be_visible()
            expect(main.get_by_text("Harbor Mental Health", exact=False).first).to_be_visible()
            expect(main.get_by_text("Harbor's own terms, line one.")).to_be_visible()
            expect(main.get_by_text(XSS)).to_be_visible()
            expect(main.locator("img")).to_have_count(0)
            assert other.evaluate("window.__xss") is None
            assert other.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
            # Another practice's page shows its own (default) text.
            other.goto(f"{app_url}/privacy?practice=summit")
            expect(other.get_by_role("heading", name="Privacy notice")).to_be_visible()
            expect(other.get_by_text(re.compile("Summit Counseling uses this service"))).to_be_visible()
            expect(other.get_by_text("Harbor", exact=False)).to_have_count(0)
            other.get_by_role("link", name="Terms of use").click()  # the other text, of the same practice
            expect(other).to_have_url(re.compile(r"/terms/?\?practice=summit$"))
            expect(other.get_by_text(re.compile("Summit Counseling's online booking"))).to_be_visible()
            # No practice named and nobody signed in: the general text, saying so.
            other.goto(f"{app_url}/terms")
            expect(other.get_by_text(re.compile("Each practice sets its own text"))).to_be_visible()
        finally:
            visitor.close()
        # A signed-in patient of the practice reads its text without naming it.
        patient = browser.new_context()
        try:
            mine = patient.new_page()
            sign_in(mine, app_url, "david@harbor.example")
            expect(mine).to_have_url(re.compile(r"/patient/?$"))
            mine.goto(f"{app_url}/terms")
            expect(mine.get_by_text("Bring your insurance card.")).to_be_visible()
            mine.get_by_role("link", name="Back to your home").click()
            expect(mine).to_have_url(re.compile(r"/patient/?$"))
        finally:
            patient.close()
        # The public REST read says the same.
        body = httpx.get(f"{app_url}/api/v1/practices/harbor/texts/terms").json()
        assert body["source"] == "practice" and XSS in body["paragraphs"]
    finally:
        page.get_by_role("button", name="Restore default").first.click()
        expect(page.get_by_role("status").filter(has_text="The default text is back.")).to_be_visible()
    assert httpx.get(f"{app_url}/api/v1/practices/harbor/texts/terms").json()["source"] == "default"


# -- the 24-hour rule, before the click -----------------------------------------------------------------------


def test_the_cancellation_window_is_shown_before_booking_and_next_to_cancel(page: Page, app_url: str) -> None:
    """Read-only for the shared demo data: the hold is given back, nothing is booked or cancelled (a freed slot
    would go to someone's waitlist), and the wider window is the test's own policy row, removed after."""
    sign_in(page, app_url, "alice@harbor.example")
    expect(page).to_have_url(re.compile(r"/patient/?$"))
    page.goto(f"{app_url}/patient/find")
    page.get_by_label("Name").fill("Chen")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("article", name=re.compile("Wei Chen")).get_by_role("link", name="See times").click()
    expect(page).to_have_url(re.compile(r"/patient/provider/"))
    week = page.locator("#week-label")
    for _ in range(5):  # past the seeded appointments
        shown = week.inner_text()
        page.get_by_role("button", name="Next week").click()
        expect(week).not_to_have_text(shown)
    page.locator('[data-status="free"]').first.click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("heading", name="Confirm your appointment")).to_be_visible()
    # Before the click: until when it can be cancelled or moved online, and what happens after.
    rule = dialog.locator("#booking-rule")
    until = r"You can cancel or move it online until \w{3} \d\d \w{3} \d{4}, \d\d:\d\d"
    expect(rule).to_contain_text(re.compile(until))
    expect(rule).to_contain_text("(24 hours before)")
    expect(rule).to_contain_text("a cancellation counts as late")
    dialog.get_by_role("button", name="Cancel").click()  # the hold is given back
    expect(dialog).to_have_count(0)

    page.goto(f"{app_url}/patient/appointments")
    cards = page.get_by_role("region", name="Upcoming").get_by_role("article")
    expect(cards.first).to_be_visible()
    for card in cards.all():
        # Every upcoming appointment says where it stands next to its buttons, and the buttons agree.
        text = card.locator(".change-rule")
        expect(text).to_have_text(re.compile(STANDING))
        if text.inner_text().startswith("Less than"):
            expect(card.get_by_role("button", name="Reschedule")).to_be_disabled()
        else:
            expect(card.get_by_role("button", name="Reschedule")).to_be_enabled()
    expect(cards.filter(has_text="Free to cancel or move online until")).not_to_have_count(0)

    # The practice widens its window to 60 days: every upcoming appointment is now inside it, and says so up front.
    with psycopg.connect(_owner_db(), autocommit=True) as conn:
        row = conn.execute("SELECT id FROM tenants WHERE slug = 'harbor'").fetchone()
        assert row is not None
        policy_id = uuid.uuid4()
        conn.execute(
            "INSERT INTO booking_policies (id, tenant_id, clinic_id, min_notice_minutes, horizon_days,"
            " cancellation_window_hours, hold_minutes, updated_at) VALUES (%s, %s, NULL, 60, 90, 1440, 10, now())",
            (policy_id, row[0]),
        )
    try:
        page.reload()
        cards = page.get_by_role("region", name="Upcoming").get_by_role("article")
        expect(cards.first).to_be_visible()
        for card in cards.all():
            expect(card.locator(".change-rule")).to_contain_text(
                "Less than 60 days to go: cancelling now counts as a late cancellation"
            )
            expect(card.get_by_role("button", name="Reschedule")).to_be_disabled()
        cards.first.get_by_role("button", name="Cancel").click()
        cancel = page.get_by_role("alertdialog")
        expect(cancel).to_contain_text("will be recorded as a late cancellation")
        cancel.get_by_role("button", name="Keep it").click()
        expect(cancel).to_have_count(0)
    finally:
        with psycopg.connect(_owner_db(), autocommit=True) as conn:
            conn.execute("DELETE FROM booking_policies WHERE id = %s", (policy_id,))
