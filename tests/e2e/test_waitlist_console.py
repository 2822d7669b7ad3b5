"""The doctor's live waitlist console, admin oversight and the policy editor, in a real browser.

Uses the Summit practice's Dr. Okafor with patients Grace (seeded, urgent) and Hiro (joins during the test),
and the Summit Online clinic's policy (an override created and removed again); other e2e tests use Harbor,
Carla, Dan and Dr. Lindqvist.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.e2e.test_booking_pages import api_get, api_token, provider_id
from tests.e2e.test_portal import sign_in

pytestmark = pytest.mark.e2e

OKAFOR = "Dr. Amara Okafor"
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _shot(page: Page, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / f"waitlist-{name}.png"), full_page=True)


def _api(base: str, token: str, method: str, path: str, **body: Any) -> httpx.Response:
    return httpx.request(
        method, f"{base}/api/v1{path}", json=body or None, headers={"Authorization": f"Bearer {token}"}, timeout=20
    )


def _choose(page: Page, trigger_id: str, option: str) -> None:
    page.locator(f"#{trigger_id}").click()
    page.get_by_role("option", name=option, exact=True).click()
    expect(page.locator(f"#{trigger_id}")).to_contain_text(option)


def _open_console(page: Page, base: str) -> None:
    sign_in(page, base, "dr.okafor@summit.example")
    expect(page).to_have_url(re.compile(r"/doctor/?$"))
    page.get_by_role("link", name="Waitlist").first.click()
    expect(page).to_have_url(re.compile(r"/doctor/waitlist/?$"))
    expect(page.get_by_role("heading", name="Waitlist", exact=True)).to_be_visible()


def test_doctor_console_ranks_seeded_entries_with_reasons_and_promotes(page: Page, app_url: str) -> None:
    _open_console(page, app_url)
    waitlist = page.get_by_role("list", name="Waitlist")
    grace = waitlist.get_by_role("listitem", name="Grace Liu")
    expect(grace).to_be_visible()
    expect(grace.get_by_text("Urgent", exact=True)).to_be_visible()
    # Why next: the ranking's own reasons.
    why = grace.locator(".why-next")
    expect(why.get_by_text("Why next")).to_be_visible()
    expect(why.get_by_text(re.compile(r"^Urgent urgency \(\+\d+"))).to_be_visible()
    expect(why.get_by_text(re.compile(r"^Waiting "))).to_be_visible()
    # Preferred windows in the clinic's zone, and the target.
    expect(grace.get_by_text(re.compile(r"Tue 09:00–12:00 · Denver time"))).to_be_visible()
    expect(grace.get_by_text(re.compile(r"Summit Boulder · Dr\. Amara Okafor"))).to_be_visible()
    # "Any provider" at a clinic where she works is hers too; Dr. Lindqvist's patient is not.
    expect(waitlist.get_by_role("listitem", name="Felix Wagner")).to_be_visible()
    expect(page.get_by_text("Erin Walsh")).to_have_count(0)
    _shot(page, "doctor-console")

    # Promote: the best free slot is offered now; the row shows the live offer with its ticking expiry.
    grace.get_by_role("button", name="Promote Grace Liu").click()
    expect(grace.get_by_text("Offer pending")).to_be_visible()
    expect(grace.get_by_role("timer")).to_have_text(re.compile(r"^\d+:\d\d(:\d\d)?$"))
    expect(grace.get_by_text(re.compile(r"Expires \d\d:\d\d|Expires \w{3} \d\d \w{3}"))).to_be_visible()
    # Promoting again is refused by the button (an offer is live), not by a crash.
    expect(grace.get_by_role("button", name="Promote Grace Liu")).to_be_disabled()
    _shot(page, "doctor-console-offer")


def test_invite_dialog_says_how_the_patient_will_hear_of_it(page: Page, app_url: str) -> None:
    _open_console(page, app_url)
    felix = page.get_by_role("list", name="Waitlist").get_by_role("listitem", name="Felix Wagner")
    felix.get_by_role("button", name="Invite Felix Wagner").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Invite Felix Wagner")
    # His own choices (the seed's defaults: e-mail only), read-only.
    expect(dialog.get_by_text("They hear by e-mail.")).to_be_visible()
    dialog.get_by_role("button", name="Cancel").click()
    expect(page.get_by_role("dialog")).to_have_count(0)


def test_new_entry_appears_live_in_the_open_console_and_can_be_removed(context: BrowserContext, app_url: str) -> None:
    page = context.new_page()
    _open_console(page, app_url)
    waitlist = page.get_by_role("list", name="Waitlist")
    expect(waitlist.get_by_role("listitem", name="Grace Liu")).to_be_visible()
    expect(page.get_by_role("listitem", name="Hiro Tanaka")).to_have_count(0)
    # A marker that a reload would wipe.
    page.evaluate("window.__noReload = 'still here'")

    # Hiro joins Dr. Okafor's waitlist through the REST API, as another device would.
    hiro = api_token(app_url, "hiro@summit.example")
    okafor = provider_id(app_url, hiro, OKAFOR)
    boulder = next(c["id"] for c in api_get(app_url, hiro, "/clinics") if c["name"] == "Summit Boulder")
    joined = _api(
        app_url,
        hiro,
        "POST",
        "/waitlists",
        clinic_id=boulder,
        provider_id=okafor,
        specialty="Psychiatry",
        windows=[{"weekday": 2, "start": "13:00", "end": "17:00"}],
        urgency=2,
        reason="Medication review",
    )
    assert joined.status_code == 201, joined.text
    sent = time.monotonic()

    hiro_row = waitlist.get_by_role("listitem", name="Hiro Tanaka")
    expect(hiro_row).to_be_visible(timeout=5000)
    latency = time.monotonic() - sent
    print(f"\nlive update latency (API commit -> row visible): {latency * 1000:.0f} ms")
    assert page.evaluate("window.__noReload") == "still here"
    expect(hiro_row.get_by_text("Wed 13:00–17:00 · Denver time")).to_be_visible()
    expect(hiro_row.get_by_text(re.compile(r"^Soon urgency \(\+\d+"))).to_be_visible()
    _shot(page, "doctor-console-live")

    # Remove, with a confirmation: the row goes at once and stays gone; the entry is closed as removed.
    hiro_row.get_by_role("button", name="Remove Hiro Tanaka").click()
    dialog = page.get_by_role("alertdialog")
    expect(dialog).to_contain_text("Remove Hiro Tanaka from the waitlist?")
    dialog.get_by_role("button", name="Remove", exact=True).click()
    expect(page.get_by_role("listitem", name="Hiro Tanaka")).to_have_count(0)
    expect(page.get_by_text("Hiro Tanaka removed from the waitlist.")).to_be_visible()
    entry = _api(app_url, hiro, "GET", f"/waitlists/{joined.json()['id']}")
    assert entry.json()["status"] == "removed", entry.text


def test_admin_sees_waitlists_across_clinics_and_filters_them(page: Page, app_url: str) -> None:
    sign_in(page, app_url, "admin@summit.example")
    expect(page).to_have_url(re.compile(r"/admin/?$"))
    page.get_by_role("link", name="Waitlists").first.click()
    expect(page.get_by_role("heading", name="Waitlists", exact=True)).to_be_visible()
    table = page.get_by_role("table").first
    for name in ("Grace Liu", "Felix Wagner", "Erin Walsh"):
        expect(table.get_by_role("rowheader", name=re.compile(name))).to_be_visible()
    _shot(page, "admin-waitlists")
    page.get_by_role("combobox", name="Clinic").click()
    page.get_by_role("option", name="Summit Boulder", exact=True).click()
    expect(table.get_by_role("rowheader", name=re.compile("Felix Wagner"))).to_have_count(0)
    expect(table.get_by_role("rowheader", name=re.compile("Erin Walsh"))).to_be_visible()
    _choose(page, "wl-urgency", "Urgent")
    expect(table.get_by_role("rowheader", name=re.compile("Erin Walsh"))).to_have_count(0)
    expect(table.get_by_role("rowheader", name=re.compile("Grace Liu"))).to_be_visible()


def test_admin_policy_shows_a_field_error_then_saves_and_reverts_a_clinic_override(page: Page, app_url: str) -> None:
    sign_in(page, app_url, "admin@summit.example")
    expect(page).to_have_url(re.compile(r"/admin/?$"))
    page.get_by_role("link", name="Policy").first.click()
    expect(page.get_by_role("heading", name="Waitlist policy")).to_be_visible()
    expect(page.locator("#bounds-offer_hold_minutes")).to_have_text("Allowed: 5–1,440")
    _choose(page, "policy-scope", "Summit Online")
    expect(page.get_by_text("Following the practice default")).to_be_visible()

    hold = page.get_by_label("Offer hold")
    hold.fill("2")
    page.get_by_role("button", name="Save policy").click()
    expect(page.locator("#err-offer_hold_minutes")).to_have_text("Offer hold must be from 5 to 1440")
    expect(hold).to_have_attribute("aria-invalid", "true")
    expect(hold).to_have_attribute("aria-describedby", "bounds-offer_hold_minutes err-offer_hold_minutes")
    expect(page.get_by_text("Following the practice default")).to_be_visible()  # nothing saved
    _shot(page, "admin-policy-error")

    hold.fill("30")
    page.get_by_role("button", name="Save policy").click()
    expect(page.get_by_text("Waitlist policy saved.")).to_be_visible()
    expect(page.get_by_text("This clinic's own policy")).to_be_visible()
    expect(page.locator("#err-offer_hold_minutes")).to_have_text("")  # the live region stays, empty
    expect(hold).to_have_attribute("aria-invalid", "false")
    expect(page.get_by_label("Offer hold")).to_have_value("30")

    page.get_by_role("button", name="Use practice default").click()
    expect(page.get_by_text("This clinic now follows the practice default.")).to_be_visible()
    expect(page.get_by_text("Following the practice default")).to_be_visible()
