"""The waitlist flow in two browsers at once, as the issue asks: a patient joins on their page and the
doctor's open console shows it without reload; the doctor promotes and the patient's open page shows the
offer with its countdown; the patient accepts and both pages show the booking.

Uses Harbor's Dr. Wei Chen and patient Ben Okoro, whom the other e2e tests only read.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, expect

from tests.e2e.test_booking_pages import api_get, api_token, provider_id
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
