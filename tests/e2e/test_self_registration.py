"""Self-registration in a real browser: the admin turns it on for the practice (People page); a newcomer finds
"Create an account" on the practice's sign-in link, registers (a refused password shows its reason beside the
field), opens the verification link from the Outbox, confirms with the password chosen, is signed in and books.
Closed, the page says registration is not open; a used link says so.

Everything is switched back off at the end. Set E2E_SHOTS_DIR to keep screenshots at desktop and phone width.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.flows import book_with_brooks, sign_in_is_refused
from tests.e2e.test_booking_pages import api_token
from tests.e2e.test_onboarding import shot
from tests.e2e.test_portal import sign_in

pytestmark = pytest.mark.e2e

GOOD_PASSWORD = "juniper lantern orbit 88"
VERIFY_LINK = re.compile(r"/verify/[A-Za-z0-9_-]{20,}")


def set_registration(base: str, admin_token: str, enabled: bool) -> None:
    response = httpx.put(
        f"{base}/api/v1/self-registration",
        json={"enabled": enabled},
        headers={"Authorization": f"Bearer {admin_token}"},
        timeout=20,
    )
    response.raise_for_status()


def verify_link_in_outbox(base: str, admin_token: str, name: str) -> str:
    """The newest verification link sent to the newcomer `name`, as the admin reads it in the Outbox (REST)."""
    headers = {"Authorization": f"Bearer {admin_token}"}
    notes = httpx.get(
        f"{base}/api/v1/notifications", params={"event_type": "registration_verify"}, headers=headers, timeout=20
    ).json()
    note = next(n for n in notes if n["patient_name"].startswith(name))
    text = httpx.get(f"{base}/api/v1/notifications/{note['id']}", headers=headers, timeout=20).json()["text"]
    found = VERIFY_LINK.search(text)
    assert found, text
    return found.group(0)


@pytest.fixture
def registration_closed_after(app_url: str) -> Iterator[str]:
    """Harbor's admin token; whatever happens, Harbor's registration is off again afterwards."""
    token = api_token(app_url, "admin@harbor.example")
    yield token
    set_registration(app_url, api_token(app_url, "admin@harbor.example"), False)


def _register(page: Page, name: str, email: str, password: str) -> None:
    page.get_by_label("Full name").fill(name)
    page.get_by_label("Email (you will sign in with it)").fill(email)
    page.get_by_label("Choose a password").fill(password)
    page.get_by_label("I accept the terms of use and the privacy notice.").check()
    page.get_by_role("button", name="Create account").click()


def test_a_newcomer_registers_confirms_from_the_outbox_link_signs_in_and_books(
    browser: Browser, app_url: str, registration_closed_after: str
) -> None:
    # Closed (the default): the page says so, and the sign-in page offers nothing.
    visitor = browser.new_context(viewport={"width": 1280, "height": 860})
    visitor.set_default_timeout(15_000)
    page = visitor.new_page()
    page.goto(f"{app_url}/register/harbor")
    expect(page.get_by_role("heading", name="Online registration is not open")).to_be_visible()
    shot(page, "register-closed")
    page.goto(f"{app_url}/login?practice=harbor")
    expect(page.get_by_role("heading", name="Waitwell")).to_be_visible()
    expect(page.locator("#register-link")).to_have_count(0)

    # The admin turns it on, on the People page.
    admin = browser.new_context(viewport={"width": 1280, "height": 860})
    admin.set_default_timeout(15_000)
    admin_page = admin.new_page()
    sign_in(admin_page, app_url, "admin@harbor.example")
    expect(admin_page).to_have_url(re.compile(r"/admin/?$"))
    admin_page.goto(f"{app_url}/admin/people")
    switch = admin_page.get_by_role("switch", name="Patients may create their own account")
    expect(switch).to_be_enabled()
    expect(switch).to_have_attribute("aria-checked", "false")
    switch.click()
    expect(switch).to_have_attribute("aria-checked", "true")
    expect(admin_page.locator('a[href="/register/harbor"]')).to_contain_text("/register/harbor")
    shot(admin_page, "admin-people-registration-on")

    # The newcomer: the practice's sign-in link offers registration.
    page.goto(f"{app_url}/login?practice=harbor")
    expect(page.get_by_role("link", name="Create an account")).to_be_visible()
    shot(page, "login-register-link")
    page.get_by_role("link", name="Create an account").click()
    expect(page).to_have_url(re.compile(r"/register/harbor$"))
    expect(page.get_by_role("heading", name="Create your account")).to_be_visible()
    shot(page, "register")
    suffix = uuid.uuid4().hex[:6]
    name, email = f"Quinn Newcomer {suffix}", f"quinn.{suffix}@example.org"
    # A common password: the reason beside the field, the field marked invalid, what was typed kept.
    _register(page, name, email, "Password2026!")
    password = page.get_by_label("Choose a password")
    expect(page.locator("#err-register-password")).to_contain_text("too common")
    expect(password).to_have_attribute("aria-invalid", "true")
    expect(password).to_have_attribute("aria-describedby", re.compile(r"err-register-password"))
    expect(page.get_by_label("Email (you will sign in with it)")).to_have_value(email)
    shot(page, "register-error")
    password.fill(GOOD_PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Check your e-mail")).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("open the link in it")
    shot(page, "register-sent")
    # Nothing usable yet: the password does not sign in.
    page.goto(f"{app_url}/login")
    sign_in_is_refused(page, email, GOOD_PASSWORD)

    # The link is in the admin's Outbox (console channel), addressed to the newcomer.
    admin_page.get_by_role("link", name="Outbox").first.click()
    outbox_row = admin_page.get_by_role("row").filter(has_text=name).filter(has_text="Registration: verify e-mail")
    expect(outbox_row).to_be_visible()
    admin.close()
    path = verify_link_in_outbox(app_url, registration_closed_after, name)

    page.goto(app_url + path)
    expect(page.get_by_role("heading", name="Confirm your e-mail")).to_be_visible()
    expect(page.get_by_text(email)).to_be_visible()
    shot(page, "verify")
    page.get_by_label("Your password").fill("not the one I chose")
    page.get_by_role("button", name="Confirm and sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not the password you chose")
    page.get_by_label("Your password").fill(GOOD_PASSWORD)
    page.get_by_role("button", name="Confirm and sign in").click()
    expect(page).to_have_url(re.compile(r"/patient/?$"))
    expect(page.get_by_role("heading", name=re.compile(f"Hello, {name}"))).to_be_visible()

    # And books: a provider's week, eight weeks on.
    book_with_brooks(page, weeks_ahead=8)

    # The link worked once: opened again, it says so.
    page.goto(app_url + path)
    expect(page.get_by_role("heading", name="This link has expired or was already used")).to_be_visible()
    shot(page, "verify-used")
    visitor.close()
