"""Getting in, in a real browser: the admin invites a patient, who sets a password from the link in the Outbox and
books; a forgotten password is reset from its link (the old one refused after, the old session ended); a used or
expired link gets a clear page.

The people these tests create are new (invited here), so no other test's demo login is touched. Set E2E_SHOTS_DIR
to keep screenshots of the pages at desktop and phone width.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.conftest import ADMIN_URL, TEST_DB_NAME
from tests.e2e.flows import book_with_brooks, sign_in_is_refused
from tests.e2e.test_booking_pages import api_token
from tests.e2e.test_portal import sign_in

pytestmark = pytest.mark.e2e

GOOD_PASSWORD = "maple lantern river 2049"
NEW_PASSWORD = "copper kettle quiet bay"
LINK = re.compile(r"/(invite|reset)/[A-Za-z0-9_-]{20,}")
SHOTS = Path(os.environ["E2E_SHOTS_DIR"]) if os.environ.get("E2E_SHOTS_DIR") else None


def shot(page: Page, name: str) -> None:
    """Screenshots of the page at desktop width and at 390 px (kept only when E2E_SHOTS_DIR is set)."""
    if SHOTS is None:
        return
    SHOTS.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size or {"width": 1280, "height": 860}
    page.screenshot(path=str(SHOTS / f"{name}-desktop.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(SHOTS / f"{name}-390.png"), full_page=True)
    page.set_viewport_size(size)


def _api(base: str, token: str, method: str, path: str, **kwargs: object) -> httpx.Response:
    response = httpx.request(
        method, f"{base}/api/v1{path}", headers={"Authorization": f"Bearer {token}"}, timeout=20, **kwargs
    )
    response.raise_for_status()
    return response


def link_in_outbox(base: str, admin_token: str, event_type: str, name: str) -> str:
    """The path of the newest link of `event_type` sent to `name`, as the admin reads it in the outbox."""
    notes = _api(base, admin_token, "GET", "/notifications", params={"event_type": event_type}).json()
    note = next(n for n in notes if n["patient_name"].startswith(name))
    text = _api(base, admin_token, "GET", f"/notifications/{note['id']}").json()["text"]
    found = LINK.search(text)
    assert found, text
    return found.group(0)


def invited_patient(base: str, admin_token: str) -> tuple[str, str]:
    """A new Harbor patient with a password of their own (invited and accepted through the API): (name, e-mail)."""
    suffix = uuid.uuid4().hex[:8]
    name, email = f"Rowan Reset {suffix}", f"rowan.{suffix}@example.org"
    _api(base, admin_token, "POST", "/invitations", json={"full_name": name, "email": email})
    path = link_in_outbox(base, admin_token, "account_invite", name)
    body = {"token": path.rsplit("/", 1)[1], "password": GOOD_PASSWORD, "accept_terms": True}
    httpx.post(f"{base}/api/v1/auth/invitation/accept", json=body, timeout=20).raise_for_status()
    return name, email


def test_an_invited_patient_sets_a_password_from_the_outbox_link_and_books(browser: Browser, app_url: str) -> None:
    admin = browser.new_context(viewport={"width": 1280, "height": 860})
    admin.set_default_timeout(15_000)
    page = admin.new_page()
    sign_in(page, app_url, "admin@harbor.example")
    expect(page).to_have_url(re.compile(r"/admin/?$"))
    page.get_by_role("link", name="People").first.click()
    expect(page.get_by_role("heading", name="People")).to_be_visible()
    shot(page, "admin-people")
    suffix = uuid.uuid4().hex[:6]
    name, email = f"Iris Newton {suffix}", f"iris.{suffix}@example.org"
    page.get_by_role("button", name="Invite someone").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Full name").fill(name)
    dialog.get_by_label("E-mail (their sign-in name)").fill("not an address")
    dialog.get_by_role("button", name="Send invitation").click()
    # The browser's own check, or ours: either way nobody is created.
    dialog.get_by_label("E-mail (their sign-in name)").fill(email)
    dialog.get_by_label("Home clinic").select_option(label="Harbor Downtown")
    shot(page, "admin-invite-dialog")
    dialog.get_by_role("button", name="Send invitation").click()
    expect(dialog).to_be_hidden()
    row = page.locator(".person-row", has_text=name)
    expect(row).to_contain_text("Invited")
    expect(row.get_by_role("button", name=f"Send new link to {name}")).to_be_visible()

    # The console channel: the link is in the admin's Outbox.
    page.get_by_role("link", name="Outbox").first.click()
    outbox_row = page.get_by_role("row").filter(has_text=name).filter(has_text="Invitation to set a password")
    expect(outbox_row).to_be_visible()
    outbox_row.get_by_role("button", name="Read").click()
    message = page.get_by_role("dialog")
    expect(message).to_contain_text("/invite/")
    found = LINK.search(message.inner_text())
    assert found
    invite_path = found.group(0)
    admin.close()

    patient = browser.new_context(viewport={"width": 1280, "height": 860})
    patient.set_default_timeout(15_000)
    page = patient.new_page()
    page.goto(app_url + invite_path)
    expect(page.get_by_role("heading", name="Welcome to Harbor Mental Health")).to_be_visible()
    expect(page.get_by_text(email)).to_be_visible()
    shot(page, "invite")
    # A common password is refused with the reason, and nothing is set.
    page.get_by_label("Choose a password").fill("password1234")
    page.get_by_label("I accept the terms of use and the privacy notice.").check()
    page.get_by_role("button", name="Set password and continue").click()
    expect(page.get_by_role("alert")).to_contain_text("too common")
    shot(page, "invite-error")
    page.get_by_label("Choose a password").fill(GOOD_PASSWORD)
    page.get_by_label("I accept the terms of use and the privacy notice.").check()
    page.get_by_role("button", name="Set password and continue").click()
    expect(page).to_have_url(re.compile(r"/patient/?$"))

    # And books: a provider's week, six weeks on.
    book_with_brooks(page, weeks_ahead=6)

    # The link worked once: opened again, it says so clearly.
    page.goto(app_url + invite_path)
    expect(page.get_by_role("heading", name="This link has expired or was already used")).to_be_visible()
    patient.close()


def test_a_forgotten_password_is_reset_from_its_link(browser: Browser, app_url: str) -> None:
    admin_token = api_token(app_url, "admin@harbor.example")
    name, email = invited_patient(app_url, admin_token)
    # A browser already signed in with the old password.
    old = browser.new_context()
    old.set_default_timeout(15_000)
    old_page = old.new_page()
    sign_in(old_page, app_url, email, GOOD_PASSWORD)
    expect(old_page).to_have_url(re.compile(r"/patient/?$"))

    ctx = browser.new_context(viewport={"width": 1280, "height": 860})
    ctx.set_default_timeout(15_000)
    page = ctx.new_page()
    page.goto(f"{app_url}/login")
    shot(page, "login")
    page.get_by_role("link", name="Forgot your password?").click()
    expect(page.get_by_role("heading", name="Forgot your password?")).to_be_visible()
    shot(page, "forgot")
    # An e-mail with no account gets exactly the same answer.
    page.get_by_label("Email").fill("nobody-here@example.org")
    page.get_by_role("button", name="Send me a link").click()
    expect(page.get_by_role("status")).to_contain_text("If an account uses that e-mail address")
    answer_for_nobody = page.get_by_role("status").inner_text()
    page.goto(f"{app_url}/forgot")
    page.get_by_label("Email").fill(email)
    page.get_by_role("button", name="Send me a link").click()
    expect(page.get_by_role("status")).to_have_text(answer_for_nobody)
    shot(page, "forgot-sent")

    reset_path = link_in_outbox(app_url, admin_token, "password_reset", name)
    page.goto(app_url + reset_path)
    expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
    shot(page, "reset")
    page.get_by_label("New password").fill(email)
    page.get_by_role("button", name="Save new password").click()
    expect(page.get_by_role("alert")).to_contain_text("not your email address")
    page.get_by_label("New password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Save new password").click()
    expect(page).to_have_url(re.compile(r"/login/?\?reset=1"))
    expect(page.get_by_text("Your password was changed")).to_be_visible()

    # The old password is refused; the new one works.
    sign_in_is_refused(page, email, GOOD_PASSWORD)
    sign_in(page, app_url, email, NEW_PASSWORD)
    expect(page).to_have_url(re.compile(r"/patient/?$"))
    # The session opened with the old password has ended.
    old_page.goto(f"{app_url}/patient/appointments")
    expect(old_page).to_have_url(re.compile(r"/login"))
    # The link is spent.
    page.goto(app_url + reset_path)
    expect(page.get_by_role("heading", name="This link has expired or was already used")).to_be_visible()
    expect(page.get_by_role("link", name="Forgot your password?")).to_be_visible()
    shot(page, "link-used")
    old.close()
    ctx.close()


def test_an_expired_or_unknown_link_gets_a_clear_page(page: Page, app_url: str) -> None:
    admin_token = api_token(app_url, "admin@harbor.example")
    suffix = uuid.uuid4().hex[:8]
    name = f"Esme Expired {suffix}"
    _api(app_url, admin_token, "POST", "/invitations", json={"full_name": name, "email": f"esme.{suffix}@example.org"})
    path = link_in_outbox(app_url, admin_token, "account_invite", name)
    page.goto(app_url + path)
    expect(page.get_by_role("heading", name="Welcome to Harbor Mental Health")).to_be_visible()
    # Time passes: the link's expiry is moved into the past in the app's database.
    with psycopg.connect(f"{ADMIN_URL.rsplit('/', 1)[0]}/{TEST_DB_NAME}_e2e", autocommit=True) as conn:
        conn.execute(
            "UPDATE onboarding_links SET expires_at = now() - interval '1 minute'"
            " WHERE user_id = (SELECT id FROM users WHERE email = %s)",
            (f"esme.{suffix}@example.org",),
        )
    page.goto(app_url + path)
    expect(page.get_by_role("heading", name="This link has expired or was already used")).to_be_visible()
    expect(page.get_by_text("ask your clinic to send you a new invitation")).to_be_visible()
    shot(page, "link-expired")
    # Posting the form anyway (an old tab) sets nothing and lands on the same page.
    response = httpx.post(
        f"{app_url}/auth/invite",
        data={"token": path.rsplit("/", 1)[1], "password": GOOD_PASSWORD, "accept_terms": "yes"},
        headers={"Origin": app_url},
        timeout=20,
    )
    assert response.status_code == 303 and response.headers["location"] == path
    for bogus in ("/invite/not-a-real-token", "/reset/" + "A" * 43):
        page.goto(app_url + bogus)
        expect(page.get_by_role("heading", name="This link has expired or was already used")).to_be_visible()


def test_an_admin_deactivates_a_staff_member_on_the_people_page_and_their_session_ends(
    browser: Browser, app_url: str
) -> None:
    admin_token = api_token(app_url, "admin@harbor.example")
    suffix = uuid.uuid4().hex[:8]
    name, email = f"Dr. Quinn Leaving {suffix}", f"quinn.{suffix}@example.org"
    clinics = _api(app_url, admin_token, "GET", "/clinics").json()
    body = {"full_name": name, "email": email, "role": "doctor", "clinic_id": clinics[0]["id"], "title": "MD"}
    _api(app_url, admin_token, "POST", "/invitations", json=body)
    path = link_in_outbox(app_url, admin_token, "account_invite", name)
    accept = {"token": path.rsplit("/", 1)[1], "password": GOOD_PASSWORD, "accept_terms": True}
    httpx.post(f"{app_url}/api/v1/auth/invitation/accept", json=accept, timeout=20).raise_for_status()

    doctor = browser.new_context()
    doctor.set_default_timeout(15_000)
    doctor_page = doctor.new_page()
    sign_in(doctor_page, app_url, email, GOOD_PASSWORD)
    expect(doctor_page).to_have_url(re.compile(r"/doctor/?$"))

    admin = browser.new_context()
    admin.set_default_timeout(15_000)
    page = admin.new_page()
    sign_in(page, app_url, "admin@harbor.example")
    page.goto(f"{app_url}/admin/people")
    row = page.locator(".person-row", has_text=name)
    expect(row).to_contain_text("Active")
    row.get_by_role("button", name=f"Deactivate {name}").click()
    confirm = page.get_by_role("alertdialog")
    expect(confirm).to_contain_text("every session and API token of theirs ends now")
    confirm.get_by_role("button", name="Deactivate").click()
    expect(row).to_contain_text("Deactivated")

    doctor_page.goto(f"{app_url}/doctor/schedule")
    expect(doctor_page).to_have_url(re.compile(r"/login"))
    response = httpx.post(f"{app_url}/api/v1/auth/token", json={"email": email, "password": GOOD_PASSWORD}, timeout=20)
    assert response.status_code == 401
    doctor.close()
    admin.close()


def test_an_admin_resets_a_clinicians_mfa_on_the_people_page(browser: Browser, app_url: str) -> None:
    """A clinician lost their phone: the admin resets their MFA; the database shows it gone, audited, sessions over."""
    import pyotp

    admin_token = api_token(app_url, "admin@harbor.example")
    suffix = uuid.uuid4().hex[:8]
    name, email = f"Dr. Lost Phone {suffix}", f"lostphone.{suffix}@example.org"
    clinics = _api(app_url, admin_token, "GET", "/clinics").json()
    body = {"full_name": name, "email": email, "role": "doctor", "clinic_id": clinics[0]["id"], "title": "MD"}
    _api(app_url, admin_token, "POST", "/invitations", json=body)
    path = link_in_outbox(app_url, admin_token, "account_invite", name)
    accept = {"token": path.rsplit("/", 1)[1], "password": GOOD_PASSWORD, "accept_terms": True}
    httpx.post(f"{app_url}/api/v1/auth/invitation/accept", json=accept, timeout=20).raise_for_status()
    login = {"email": email, "password": GOOD_PASSWORD}
    doctor_token = httpx.post(f"{app_url}/api/v1/auth/token", json=login, timeout=20).json()["access_token"]
    secret = _api(app_url, doctor_token, "POST", "/me/mfa/enrol").json()["secret"]
    _api(app_url, doctor_token, "POST", "/me/mfa/confirm", json={"code": pyotp.TOTP(secret).now()})

    admin = browser.new_context()
    admin.set_default_timeout(15_000)
    page = admin.new_page()
    sign_in(page, app_url, "admin@harbor.example")
    page.goto(f"{app_url}/admin/people")
    row = page.locator(".person-row", has_text=name)
    expect(row.get_by_role("button", name=f"Reset MFA of {name}")).to_be_visible()
    shot(page, "admin-people-mfa")
    row.get_by_role("button", name=f"Reset MFA of {name}").click()
    confirm = page.get_by_role("alertdialog")
    expect(confirm).to_contain_text("set up MFA again when they next sign in")
    shot(page, "admin-people-mfa-confirm")
    confirm.get_by_role("button", name="Reset MFA").click()
    # (While the dialog is open the rows behind it are hidden from roles: wait for the outcome, then the row.)
    expect(page.get_by_text(f"{name}'s MFA is reset")).to_be_visible()
    expect(confirm).to_be_hidden()
    expect(row.get_by_role("button", name=f"Reset MFA of {name}")).to_have_count(0)
    expect(row.get_by_role("button", name=f"Deactivate {name}")).to_be_visible()
    # The admin's own row offers no reset (another admin must do it).
    expect(page.locator(".person-row", has_text="admin@harbor.example").get_by_role("button")).to_have_count(0)
    admin.close()

    with psycopg.connect(f"{ADMIN_URL.rsplit('/', 1)[0]}/{TEST_DB_NAME}_e2e") as conn:
        user = conn.execute(
            "SELECT id, mfa_enabled_at, mfa_secret_encrypted FROM users WHERE email = %s", (email,)
        ).fetchone()
        assert user is not None and user[1] is None and user[2] is None
        assert conn.execute(
            "SELECT count(*) FROM mfa_recovery_codes WHERE user_id = %s", (user[0],)
        ).fetchone() == (0,)
        assert conn.execute(
            "SELECT count(*) FROM audit_events WHERE action = 'user.mfa_reset' AND entity_id = %s", (user[0],)
        ).fetchone() == (1,)
    stale = httpx.get(f"{app_url}/api/v1/me", headers={"Authorization": f"Bearer {doctor_token}"}, timeout=20)
    assert stale.status_code == 401
