"""The waitlist flow in two browsers at once, as the issue asks: a patient joins on their page and the
doctor's open console shows it without reload; the doctor promotes and the patient's open page shows the
offer with its countdown; the patient accepts and both pages show the booking. And the cascade after a
cancellation: the freed slot goes to the other waiting patient, never back to the one who freed it.

Uses Harbor's Dr. Wei Chen and patient Ben Okoro, whom the other e2e tests only read; the cascade uses Jordan
Brooks on a Monday afternoon nine weeks ahead (no seeded entry wants his afternoons or Mondays; the booking race
takes a slot of his in week 5, test_live_pages works in weeks 11-12) with Alice Morgan, whom the other e2e tests
only read, and David Kim (test_live_pages's patient too, in those other weeks).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tests.e2e.test_booking_pages import api_get, api_token, card_label, free_slots, monday_in, provider_id, upcoming
from tests.e2e.test_portal import sign_in

pytestmark = pytest.mark.e2e

CHEN = "Dr. Wei Chen"
BEN = "Ben Okoro"


def test_join_promote_accept_live_in_two_browsers(browser: Browser, app_url: str) -> None:
    doctor_ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    patient_ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        doctor = doctor_ctx.new_page()
        sign_in(doctor, app_url, "dr.chen@harbor.example")
        expect(doctor).to_have_url(re.compile(r"/doctor/?$"))
        doctor.goto(f"{app_url}/doctor/waitlist")
        console = doctor.get_by_role("list", name="Waitlist")
        expect(doctor.get_by_role("heading", name="Waitlist", exact=True)).to_be_visible()
        expect(console.get_by_role("listitem", name=BEN)).to_have_count(0)
        doctor.evaluate("window.__noReload = 'console'")

        # The patient joins Dr. Chen's waitlist on the join page (weekday mornings).
        patient = patient_ctx.new_page()
        sign_in(patient, app_url, "ben@harbor.example")
        expect(patient).to_have_url(re.compile(r"/patient/?$"))
        token = api_token(app_url, "ben@harbor.example")
        chen = provider_id(app_url, token, CHEN)
        downtown = next(c["id"] for c in api_get(app_url, token, "/clinics") if c["name"] == "Harbor Downtown")
        patient.goto(f"{app_url}/patient/waitlist/join?provider_id={chen}&clinic_id={downtown}")
        expect(patient.get_by_role("heading", name="Join a waitlist")).to_be_visible()
        patient.get_by_role("button", name="Weekday mornings").click()
        patient.get_by_role("button", name="Join waitlist").click()
        expect(patient).to_have_url(re.compile(r"/patient/waitlist/?$"))
        entry = patient.get_by_role("article", name=CHEN)
        expect(entry).to_be_visible()
        patient.evaluate("window.__noReload = 'patient'")

        # The doctor's open console shows the new entry without a reload.
        ben_row = console.get_by_role("listitem", name=BEN)
        expect(ben_row).to_be_visible(timeout=5000)
        assert doctor.evaluate("window.__noReload") == "console"

        # The doctor promotes; the patient's open page shows the offer with a ticking hold.
        ben_row.get_by_role("button", name=f"Promote {BEN}").click()
        expect(ben_row.get_by_text("Offer pending")).to_be_visible()
        offer = entry.get_by_role("region", name="Offer")
        expect(offer).to_be_visible(timeout=5000)
        expect(offer.get_by_text(re.compile(r"Held for you until \d\d:\d\d"))).to_be_visible()
        expect(offer.get_by_role("timer")).to_have_text(re.compile(r"^\d+:\d\d(:\d\d)?$"))
        assert patient.evaluate("window.__noReload") == "patient"

        # The patient accepts: their page shows the booking, and the doctor's console too (live).
        offer.get_by_role("button", name="Accept").click()
        banner = patient.locator(".rt-CalloutText").filter(has_text=re.compile(r"^Booked: .* See My appointments"))
        expect(banner).to_be_visible()
        expect(console.get_by_role("listitem", name=BEN)).to_have_count(0, timeout=5000)
        assert doctor.evaluate("window.__noReload") == "console"
        doctor.locator("#console-status").click()
        doctor.get_by_role("option", name="Booked", exact=True).click()
        expect(console.get_by_role("listitem", name=BEN).get_by_text("Booked")).to_be_visible()

        # And the booking is a real appointment of Ben's.
        appointments = api_get(app_url, token, "/appointments")
        assert [a for a in appointments if a["provider_name"].startswith(CHEN) and a["status"] == "booked"]
    finally:
        doctor_ctx.close()
        patient_ctx.close()


BROOKS = "Jordan Brooks"
ALICE = "alice@harbor.example"  # books the slot, waits for it too, and cancels it
DAVID = "david@harbor.example"  # waits for it


def _post(base: str, token: str, path: str, **body: Any) -> httpx.Response:
    return httpx.post(f"{base}/api/v1{path}", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=20)


def test_a_cancelled_slot_goes_to_the_other_waiting_patient_never_back_to_the_canceller(
    browser: Browser, app_url: str
) -> None:
    alice, david = api_token(app_url, ALICE), api_token(app_url, DAVID)
    brooks = provider_id(app_url, alice, BROOKS)
    westside = next(c["id"] for c in api_get(app_url, alice, "/clinics") if c["name"] == "Harbor Westside")
    week = monday_in(9)

    # Alice books Jordan Brooks's first free Monday-afternoon slot that week, in person at Harbor Westside.
    def monday_afternoon(slot: dict[str, Any]) -> bool:
        local = datetime.fromisoformat(slot["start"]).astimezone(ZoneInfo(slot["timezone"]))
        return local.weekday() == 0 and local.hour >= 13

    slot = next(s for s in free_slots(app_url, alice, brooks, week) if monday_afternoon(s))
    booked = _post(app_url, alice, "/appointments", provider_id=brooks, start=slot["start"])
    assert booked.status_code == 201, booked.text
    zone = ZoneInfo(slot["timezone"])
    start, end = (datetime.fromisoformat(slot[k]).astimezone(zone) for k in ("start", "end"))

    # Both wait for exactly that time with him; Alice ranks first (more urgent, and she joined first).
    window = [{"weekday": 0, "start": f"{start:%H:%M}", "end": f"{end:%H:%M}"}]
    entries = {}
    for token, urgency in ((alice, 3), (david, 1)):
        joined = _post(app_url, token, "/waitlists", clinic_id=westside, provider_id=brooks, windows=window,
                       earliest_date=week.isoformat(), latest_date=(week + timedelta(days=6)).isoformat(),
                       urgency=urgency)  # fmt: skip
        assert joined.status_code == 201, joined.text
        entries[token] = joined.json()["id"]

    alice_ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    david_ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        # David's My waitlist is open: his entry, no offer yet.
        david_page = david_ctx.new_page()
        sign_in(david_page, app_url, DAVID)
        expect(david_page).to_have_url(re.compile(r"/patient/?$"))
        david_page.goto(f"{app_url}/patient/waitlist")
        david_entry = david_page.get_by_role("article", name=BROOKS)
        expect(david_entry).to_be_visible()
        expect(david_entry.get_by_role("region", name="Offer")).to_have_count(0)

        # Alice cancels her appointment on My appointments.
        alice_page = alice_ctx.new_page()
        sign_in(alice_page, app_url, ALICE)
        expect(alice_page).to_have_url(re.compile(r"/patient/?$"))
        alice_page.goto(f"{app_url}/patient/appointments")
        label = card_label(slot["start"], slot["end"], slot["timezone"])
        card = upcoming(alice_page).get_by_role("article", name=label)
        card.get_by_role("button", name="Cancel").click()
        dialog = alice_page.get_by_role("alertdialog")
        expect(dialog).to_contain_text(label)
        dialog.get_by_role("button", name="Cancel appointment").click()
        expect(dialog).to_have_count(0)
        expect(upcoming(alice_page).get_by_role("article", name=label)).to_have_count(0)

        # The freed slot is offered to David: his open page shows it, for that time.
        offer = david_entry.get_by_role("region", name="Offer")
        expect(offer).to_be_visible(timeout=10_000)
        day, time_range = label.split(", ", 1)
        expect(offer.get_by_text(day)).to_be_visible()
        expect(offer.get_by_text(time_range)).to_be_visible()

        # Alice, who freed it, is not offered it although she ranks first: her My waitlist shows her entry waiting,
        # without an offer.
        alice_page.goto(f"{app_url}/patient/waitlist")
        alice_entry = alice_page.get_by_role("article", name=BROOKS)
        expect(alice_entry).to_be_visible()
        expect(alice_entry.get_by_role("region", name="Offer")).to_have_count(0)
        expect(alice_entry.get_by_role("button", name="Accept")).to_have_count(0)
        assert api_get(app_url, alice, f"/waitlists/{entries[alice]}")["status"] == "waiting"
        assert api_get(app_url, david, f"/waitlists/{entries[david]}")["status"] == "offered"
    finally:
        alice_ctx.close()
        david_ctx.close()
