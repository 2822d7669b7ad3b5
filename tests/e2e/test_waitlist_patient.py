"""The patient's waitlist in a real browser: join from Find care, a duplicate join, a live offer with a ticking
hold, accepting it, and the appointment under My appointments.

The seeded database is shared with the other e2e tests, so these use Summit patients nobody else uses (Carla,
Dan) and offer a slot seven weeks ahead, past what the booking tests touch. Their entries ask only for dates
from that week on: the worker's sweep offers slots that other tests freed (a cancellation four weeks ahead, say)
to any waiter they fit, so an open-ended entry could be offered one of those before the test makes its own.
No test depends on another.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.test_booking_pages import api_get, api_token, card_label, free_slots, monday_in, provider_id
from tests.e2e.test_languages import reads_in
from tests.e2e.test_portal import sign_in

pytestmark = pytest.mark.e2e

LINDQVIST = "Dr. Nils Lindqvist"


def _choose(page: Page, trigger_id: str, option: str) -> None:
    page.locator(f"#{trigger_id}").click()
    page.get_by_role("option", name=option, exact=True).click()
    expect(page.locator(f"#{trigger_id}")).to_contain_text(option)


def _api(base: str, token: str, method: str, path: str, **body: Any) -> httpx.Response:
    return httpx.request(
        method, f"{base}/api/v1{path}", json=body or None, headers={"Authorization": f"Bearer {token}"}, timeout=20
    )


def test_patient_joins_from_find_care_with_two_windows_and_a_duplicate_is_refused(page: Page, app_url: str) -> None:
    reads_in(app_url, "carla@summit.example", "en")  # Carla prefers Spanish in the demo data; this test reads English
    sign_in(page, app_url, "carla@summit.example")
    expect(page).to_have_url(re.compile(r"/patient/?$"))
    page.get_by_role("link", name="Find care").first.click()
    expect(page.get_by_role("heading", name="Find care")).to_be_visible()

    # Nobody matches: the page offers the waitlist for the chosen clinic.
    _choose(page, "find-clinic", "Summit Boulder")
    page.get_by_label("Name").fill("nobody by this name")
    page.get_by_role("button", name="Search").click()
    no_match = page.get_by_role("status").filter(has_text="No provider matches your search")
    expect(no_match).to_be_visible()
    no_match.get_by_role("link", name="Join waitlist").click()

    expect(page).to_have_url(re.compile(r"/patient/waitlist/join\?clinic_id="))
    expect(page.get_by_role("heading", name="Join a waitlist")).to_be_visible()
    expect(page.locator("#wl-clinic")).to_contain_text("Summit Boulder")
    # Times are the clinic's, with the zone named.
    expect(page.get_by_text(re.compile(r"Denver time \(M[SD]T\)")).first).to_be_visible()
    expect(page.get_by_text("If this is urgent, call the clinic")).to_be_visible()
    _choose(page, "wl-provider", f"{LINDQVIST}, PsyD")

    # Submitting without a day says what is missing, beside the picker.
    page.get_by_role("button", name="Join waitlist").click()
    expect(page.locator("#err-windows")).to_contain_text("Choose at least one day")

    page.get_by_role("button", name="Tuesday").click()
    page.locator("#wl-start-1").fill("10:00")
    page.locator("#wl-end-1").fill("13:00")
    page.get_by_role("button", name="Thursday").click()
    page.locator("#wl-start-3").fill("14:00")
    page.locator("#wl-end-3").fill("18:00")
    expect(page.locator("#wl-end-3")).to_have_value("18:00")
    page.locator("#wl-earliest").fill(monday_in(8).isoformat())
    page.get_by_text("Soon", exact=True).click()
    page.get_by_label("What would you like help with?").fill("Evening shifts most weeks")
    page.get_by_role("button", name="Join waitlist").click()

    expect(page).to_have_url(re.compile(r"/patient/waitlist/?$"))
    expect(page.get_by_role("heading", name="My waitlist")).to_be_visible()
    entry = page.get_by_role("article", name=LINDQVIST)
    expect(entry).to_be_visible()
    expect(entry.get_by_text("Tue 10:00–13:00, Thu 14:00–18:00")).to_be_visible()
    expect(entry.get_by_text(re.compile(r"Denver time \(M[SD]T\)"))).to_be_visible()
    expect(entry.get_by_text("Waiting", exact=True)).to_be_visible()
    expect(entry.get_by_text("Evening shifts most weeks")).to_be_visible()

    # The same target again: refused with the service's message and a way to My waitlist.
    page.get_by_role("link", name="Join a waitlist").click()
    expect(page.get_by_role("heading", name="Join a waitlist")).to_be_visible()
    _choose(page, "wl-clinic", "Summit Boulder")
    _choose(page, "wl-provider", f"{LINDQVIST}, PsyD")
    page.get_by_role("button", name="Weekday mornings").click()
    page.get_by_role("button", name="Join waitlist").click()
    alert = page.get_by_role("alert").filter(has_text="You are already on this waitlist")
    expect(alert).to_be_visible()
    alert.get_by_role("link", name="See My waitlist").click()
    expect(page).to_have_url(re.compile(r"/patient/waitlist/?$"))
    expect(page.get_by_role("article", name=LINDQVIST)).to_have_count(1)


def test_offer_appears_live_with_a_ticking_hold_and_accepting_books_it(page: Page, app_url: str) -> None:
    # Dan is on Dr. Lindqvist's waitlist (joined by API, as the form is covered above).
    patient = api_token(app_url, "dan@summit.example")
    lindqvist = provider_id(app_url, patient, LINDQVIST)
    boulder = next(c["id"] for c in api_get(app_url, patient, "/clinics") if c["name"] == "Summit Boulder")
    joined = _api(
        app_url,
        patient,
        "POST",
        "/waitlists",
        clinic_id=boulder,
        provider_id=lindqvist,
        windows=[{"weekday": d, "start": "10:00", "end": "18:00"} for d in range(5)],
        earliest_date=monday_in(7).isoformat(),
        latest_date=(monday_in(7) + timedelta(days=6)).isoformat(),
        urgency=2,
    )
    assert joined.status_code == 201, joined.text
    entry_id = joined.json()["id"]

    sign_in(page, app_url, "dan@summit.example")
    expect(page).to_have_url(re.compile(r"/patient/?$"))
    page.get_by_role("link", name="My waitlist").first.click()
    entry = page.get_by_role("article", name=LINDQVIST)
    expect(entry).to_be_visible()
    expect(entry.get_by_role("region", name="Offer")).to_have_count(0)

    # The doctor offers a slot seven weeks ahead; the open page shows it without a reload.
    doctor = api_token(app_url, "dr.lindqvist@summit.example")
    slot = free_slots(app_url, doctor, lindqvist, monday_in(7))[-1]
    invited = _api(app_url, doctor, "POST", f"/waitlists/{entry_id}/invite", start=slot["start"])
    assert invited.status_code == 201, invited.text

    offer = entry.get_by_role("region", name="Offer")
    expect(offer).to_be_visible()
    when = card_label(slot["start"], slot["end"], slot["timezone"])
    day, time_range = when.split(", ", 1)
    expect(offer.get_by_text(day)).to_be_visible()
    expect(offer.get_by_text(time_range)).to_be_visible()
    expect(offer.get_by_text(re.compile(r"Held for you until \d\d:\d\d M[SD]T"))).to_be_visible()
    timer = offer.get_by_role("timer")
    expect(timer).to_have_text(re.compile(r"^\d+:\d\d(:\d\d)?$"))
    first = timer.inner_text()
    # It ticks in the browser (no server round trip per second).
    expect(timer).not_to_have_text(first, timeout=5_000)

    offer.get_by_role("button", name="Accept").click()
    expect(page.get_by_role("status").filter(has_text="Booked:").first).to_be_visible()
    expect(entry.get_by_role("region", name="Offer")).to_have_count(0)

    page.get_by_role("link", name="See My appointments").click()
    expect(page).to_have_url(re.compile(r"/patient/appointments/?$"))
    upcoming = page.get_by_role("region", name="Upcoming")
    expect(upcoming.get_by_text(day)).to_be_visible()
    expect(upcoming.get_by_text(time_range)).to_be_visible()
