"""One browser tab, two patients: nothing of the first one's data reaches the second one's websocket.

Patient A (Alice) opens her appointments and signs out; patient B (Ben) signs in on the same tab. Every frame the
tab's websockets receive from then on is captured and searched for Alice's appointment ids, her name and e-mail.
"""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest
from playwright.sync_api import Page, WebSocket, expect

from tests.conftest import ADMIN_URL, TEST_DB_NAME
from tests.e2e.test_portal import sign_in

pytestmark = pytest.mark.e2e

ALICE = "alice@harbor.example"
BEN = "ben@harbor.example"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _sql(query: str, *args: object) -> list[tuple[object, ...]]:
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{TEST_DB_NAME}_e2e"
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(query, args)  # type: ignore[arg-type]
        return cursor.fetchall() if cursor.description else []


def _patient(email: str) -> tuple[str, str, list[str]]:
    """(full name, e-mail, appointment ids) of a patient in the e2e database."""
    ((patient_id, full_name, mail),) = _sql("SELECT id, full_name, email FROM patients WHERE email = %s", email)
    ids = [str(row[0]) for row in _sql("SELECT id FROM appointments WHERE patient_id = %s", patient_id)]
    return str(full_name), str(mail), ids


def _reflex_token(page: Page) -> str | None:
    value = page.evaluate("() => window.sessionStorage.getItem('token')")
    return str(value) if value else None


def test_next_user_of_a_tab_never_receives_the_previous_users_data(page: Page, app_url: str) -> None:
    frames: list[str] = []
    capturing = {"on": False}

    def on_frame(payload: str | bytes) -> None:
        if capturing["on"]:
            frames.append(payload if isinstance(payload, str) else payload.decode("utf-8", "replace"))

    def on_websocket(ws: WebSocket) -> None:
        ws.on("framereceived", on_frame)

    page.on("websocket", on_websocket)

    # Patient A: her appointments page, as the page shows it.
    sign_in(page, app_url, ALICE)
    expect(page).to_have_url(re.compile(r"/patient/?$"))
    page.goto(f"{app_url}/patient/appointments")
    expect(page.get_by_role("heading", name="Upcoming", exact=True)).to_be_visible()
    alice_name, alice_email, alice_ids = _patient(ALICE)
    assert alice_name == "Alice Morgan"
    assert alice_ids, "the seed gives Alice appointments"
    expect(page.get_by_text(alice_name).first).to_be_attached()
    token_before = _reflex_token(page)
    assert token_before

    page.get_by_role("button", name="Sign out").first.click()
    expect(page.get_by_text("You have been signed out.")).to_be_visible()

    # Patient B on the same tab: capture everything the server sends from now on.
    capturing["on"] = True
    sign_in(page, app_url, BEN)
    expect(page).to_have_url(re.compile(r"/patient/?$"))
    expect(page.get_by_role("heading", name="Hello, Ben Okoro")).to_be_visible()
    page.goto(f"{app_url}/patient/appointments")
    expect(page.get_by_role("heading", name="Upcoming", exact=True)).to_be_visible()
    ben_name, _, ben_ids = _patient(BEN)
    expect(page.get_by_text(ben_name).first).to_be_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "shared-tab-ben-appointments.png"), full_page=True)
    token_after = _reflex_token(page)

    for path, heading in (
        ("/patient", "Hello, Ben Okoro"),
        ("/patient/waitlist", "My waitlist"),
        ("/patient/notifications", "Messages"),
    ):
        page.goto(f"{app_url}{path}")
        expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
    page.wait_for_timeout(1000)

    received = "\n".join(frames)
    # The capture works: Ben's own appointments reached his page.
    assert any(appointment_id in received for appointment_id in ben_ids)
    leaked = [value for value in (*alice_ids, alice_name, alice_email) if value in received]
    assert leaked == [], f"Ben's websocket received Alice's data: {leaked}"
    # Sign-out ended the tab's Reflex client: the next user has a token of their own.
    assert token_after
    assert token_after != token_before


def test_state_left_under_another_session_is_reset_before_it_reaches_the_tab(page: Page, app_url: str) -> None:
    """Even with the previous client token (say the browser never forgot it), the server serves nothing of it."""
    frames: list[str] = []
    capturing = {"on": False}

    def on_frame(payload: str | bytes) -> None:
        if capturing["on"]:
            frames.append(payload if isinstance(payload, str) else payload.decode("utf-8", "replace"))

    page.on("websocket", lambda ws: ws.on("framereceived", on_frame))

    sign_in(page, app_url, ALICE)
    expect(page).to_have_url(re.compile(r"/patient/?$"))
    page.goto(f"{app_url}/patient/appointments")
    expect(page.get_by_role("heading", name="Upcoming", exact=True)).to_be_visible()
    alice_name, alice_email, alice_ids = _patient(ALICE)
    alice_token = _reflex_token(page)
    assert alice_token

    # Her session ends without the Sign out button (it expired, the cookies were cleared); Ben signs in.
    page.context.clear_cookies()
    sign_in(page, app_url, BEN)
    expect(page.get_by_role("heading", name="Hello, Ben Okoro")).to_be_visible()

    # The tab goes back to Alice's client token, whose server-side state she filled.
    page.evaluate("token => window.sessionStorage.setItem('token', token)", alice_token)
    capturing["on"] = True
    page.goto(f"{app_url}/patient/appointments")
    expect(page.get_by_role("heading", name="Upcoming", exact=True)).to_be_visible()
    assert _reflex_token(page) == alice_token
    _, _, ben_ids = _patient(BEN)
    expect(page.get_by_text("Ben Okoro").first).to_be_visible()
    page.goto(f"{app_url}/patient")
    expect(page.get_by_role("heading", name="Hello, Ben Okoro")).to_be_visible()
    page.wait_for_timeout(1000)

    received = "\n".join(frames)
    assert any(appointment_id in received for appointment_id in ben_ids)
    leaked = [value for value in (*alice_ids, alice_name, alice_email) if value in received]
    assert leaked == [], f"Ben's websocket received Alice's data: {leaked}"
