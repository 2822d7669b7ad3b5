"""Automatic logoff in the browser: an idle page asks "Still there?", then signs itself out and leaves nothing.

The test shortens the idle timeout of its own session only (user_sessions.idle_timeout_seconds, which a session
keeps from sign-in), so no other test's session is touched: 20 s, with the warning 10 s before the end.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import psycopg
import pytest
from playwright.sync_api import Page, WebSocket, expect

from tests.conftest import ADMIN_URL, TEST_DB_NAME
from tests.e2e.test_portal import sign_in

pytestmark = pytest.mark.e2e

ALICE = "alice@harbor.example"
RIVERA = "dr.rivera@harbor.example"
TIMEOUT = 20
SHOTS = Path("/tmp/shots/logoff")  # noqa: S108 - where the screenshots are looked at


def _sql(query: str, *args: object) -> list[tuple[object, ...]]:
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{TEST_DB_NAME}_e2e"
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(query, args)  # type: ignore[arg-type]
        return cursor.fetchall() if cursor.description else []


def _shorten_own_session(email: str) -> str:
    """Give the e-mail's newest live browser session a 20-second idle timeout; return its id."""
    ((session_id,),) = _sql(
        "UPDATE user_sessions SET idle_timeout_seconds = %s WHERE id = ("
        " SELECT s.id FROM user_sessions s JOIN users u ON u.id = s.user_id"
        " WHERE u.email = %s AND s.kind = 'browser' AND s.revoked_at IS NULL ORDER BY s.created_at DESC LIMIT 1"
        ") RETURNING id",
        TIMEOUT,
        email,
    )
    return str(session_id)


def _capture(page: Page) -> tuple[list[str], dict[str, bool]]:
    frames: list[str] = []
    capturing = {"on": False}

    def on_frame(payload: str | bytes) -> None:
        if capturing["on"]:
            frames.append(payload if isinstance(payload, str) else payload.decode("utf-8", "replace"))

    def on_websocket(ws: WebSocket) -> None:
        ws.on("framereceived", on_frame)

    page.on("websocket", on_websocket)
    return frames, capturing


def _shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_an_idle_page_warns_then_signs_out_and_leaves_no_patient_data(page: Page, app_url: str) -> None:
    frames, capturing = _capture(page)
    sign_in(page, app_url, ALICE)
    expect(page).to_have_url(re.compile(r"/patient/?$"))
    session_id = _shorten_own_session(ALICE)
    ((full_name, mail, patient_id),) = _sql("SELECT full_name, email, id FROM patients WHERE email = %s", ALICE)
    ids = [str(row[0]) for row in _sql("SELECT id FROM appointments WHERE patient_id = %s", patient_id)]
    assert ids

    page.mouse.move(0, 0)
    page.goto(f"{app_url}/patient/appointments")
    opened = time.monotonic()
    expect(page.get_by_role("heading", name="Upcoming", exact=True)).to_be_visible()
    expect(page.get_by_text(str(full_name)).first).to_be_attached()
    token_before = page.evaluate("() => window.sessionStorage.getItem('token')")
    assert token_before

    # Left alone: "Still there?" about 10 s before the end (the 20-s timeout's half; a minute by default).
    dialog = page.get_by_role("alertdialog")
    expect(dialog).to_be_visible(timeout=TIMEOUT * 1000)
    warned_after = time.monotonic() - opened
    expect(dialog.get_by_text("Still there?")).to_be_visible()
    expect(dialog.get_by_role("button", name="Stay signed in")).to_be_visible()
    expect(dialog.get_by_role("button", name="Sign out")).to_be_visible()
    _shot(page, "still-there")
    capturing["on"] = True

    # Then the page signs itself out: the sign-in page, with the reason.
    expect(page).to_have_url(re.compile(r"/login/?\?idle=20"), timeout=TIMEOUT * 1000)
    signed_out_after = time.monotonic() - opened
    expect(page.get_by_text("You were signed out after 20 seconds without activity.")).to_be_visible()
    _shot(page, "signed-out")
    assert 5 <= warned_after < signed_out_after, (warned_after, signed_out_after)

    # Revoked on the server, the cookie and the tab's Reflex client gone from the browser.
    ((revoked_at, reason),) = _sql("SELECT revoked_at, revoked_reason FROM user_sessions WHERE id = %s", session_id)
    assert revoked_at is not None and reason == "idle"
    assert not [c for c in page.context.cookies() if "clinic_session" in c["name"]]
    assert page.evaluate("() => window.sessionStorage.getItem('token')") != token_before

    # Nothing of the patient in the page, nor in anything the socket received since the warning.
    html = page.content()
    for value in (str(full_name), str(mail), *ids):
        assert value not in html
    received = "\n".join(frames)
    leaked = [value for value in (str(full_name), str(mail), *ids) if value in received]
    assert leaked == [], f"frames after the warning carried patient data: {leaked}"


def test_stay_signed_in_keeps_the_session(page: Page, app_url: str) -> None:
    sign_in(page, app_url, RIVERA)
    expect(page).to_have_url(re.compile(r"/doctor/?$"))
    session_id = _shorten_own_session(RIVERA)
    page.mouse.move(0, 0)
    page.reload()
    opened = time.monotonic()
    expect(page.get_by_role("heading", name="Today's schedule")).to_be_visible()

    dialog = page.get_by_role("alertdialog")
    expect(dialog).to_be_visible(timeout=TIMEOUT * 1000)
    dialog.get_by_role("button", name="Stay signed in").click()
    expect(dialog).to_be_hidden()
    stayed_at = time.monotonic() - opened
    _shot(page, "stayed")

    # The clock started again from the click: the next warning comes about 10 s after it, past the first timeout.
    expect(dialog).to_be_visible(timeout=TIMEOUT * 1000)
    assert time.monotonic() - opened > TIMEOUT, (stayed_at, time.monotonic() - opened)
    expect(page).to_have_url(re.compile(r"/doctor/?$"))
    ((revoked_at,),) = _sql("SELECT revoked_at FROM user_sessions WHERE id = %s", session_id)
    assert revoked_at is None
    dialog.get_by_role("button", name="Stay signed in").click()
    expect(dialog).to_be_hidden()
