"""Rescheduling in a real browser never silently moves a visit to another clinic (issue 10 item 4).

Dr. Okafor (Summit) sees patients in person at Summit Boulder (Denver time, Monday to Thursday) and by
telehealth at Summit Online (Los Angeles time, Fridays). Moving an in-person Boulder appointment starts on
Boulder's times only; Summit Online is reachable but labelled "Another clinic", and a time there shows every
change (clinic, time zone, visit type) in the dialog and needs the patient's explicit yes.

Uses patient Carla, whom the other e2e tests do not book for, nine weeks ahead (the other tests use weeks 1-7,
and Grace's notification tests book Sofia Alvarez, not Okafor), on a Monday morning, which matches none of the
seeded or test-made waitlist windows for Dr. Okafor (Grace: Tuesday mornings, Hiro: Wednesday afternoons), so
the freed time is offered to nobody those tests watch.
"""

from __future__ import annotations

import re
from datetime import datetime

import httpx
import pytest
from playwright.sync_api import Page, expect

from portal.components import format as fmt
from tests.e2e.test_booking_pages import api_get, api_token, book_via_api, card_label, upcoming
from tests.e2e.test_languages import reads_in
from tests.e2e.test_portal import sign_in

pytestmark = pytest.mark.e2e

CARLA = "carla@summit.example"
DENVER, LOS_ANGELES = "America/Denver", "America/Los_Angeles"
CURRENT = "Summit Boulder · Denver time (current)"
ANOTHER = "Another clinic: Summit Online, Los Angeles time"


def test_reschedule_offers_the_same_clinic_first_and_a_clinic_change_needs_an_explicit_yes(
    page: Page, app_url: str
) -> None:
    booked = book_via_api(app_url, CARLA, "Amara Okafor", weeks_ahead=9)
    assert (booked["modality"], booked["timezone"]) == ("in_person", DENVER), booked
    assert fmt.local(datetime.fromisoformat(booked["start_at"]), DENVER).weekday() == 0, "a Monday, as planned"
    old_label = card_label(booked["start_at"], booked["end_at"], DENVER)

    reads_in(app_url, CARLA, "en")  # Carla prefers Spanish in the demo data; this test reads the English pages
    sign_in(page, app_url, CARLA)
    expect(page).to_have_url(re.compile(r"/patient/?$"))
    page.goto(f"{app_url}/patient/appointments")
    upcoming(page).get_by_role("article", name=old_label).get_by_role("button", name="Reschedule").click()
    expect(page).to_have_url(re.compile(rf"/patient/provider/{booked['provider']}\?reschedule={booked['id']}"))
    expect(page.get_by_text("Choose a new time for your appointment of")).to_contain_text(
        f"{old_label} (Summit Boulder · In person)"
    )

    # The week opens on the appointment's own clinic: Boulder's in-person times only, the visit marked Current.
    clinics = page.get_by_role("group", name="Clinic")
    current, another = clinics.get_by_role("button", name=CURRENT), clinics.get_by_role("button", name=ANOTHER)
    expect(current).to_have_attribute("aria-pressed", "true")
    expect(another).to_have_attribute("aria-pressed", "false")
    expect(page.locator('[data-status="current"]')).to_have_count(1)
    free = page.locator('[data-status="free"]')
    expect(free.first).to_be_visible()
    expect(free.first).to_have_attribute("aria-label", re.compile(r"In person at Summit Boulder, free$"))
    expect(page.locator("[data-start][aria-label*='Telehealth']")).to_have_count(0)
    expect(page.get_by_text("Times are in Denver time.")).to_be_visible()

    # The other clinic is reachable, and labelled as a change.
    another.click()
    expect(another).to_have_attribute("aria-pressed", "true")
    note = page.get_by_role("status").filter(has_text=ANOTHER)
    expect(note).to_contain_text("Your appointment is at Summit Boulder")
    expect(page.locator('[data-status="current"]')).to_have_count(0)
    expect(page.get_by_text("Times are in Los Angeles time.")).to_be_visible()
    slot = free.first
    expect(slot).to_have_attribute("aria-label", re.compile(r"Telehealth, free$"))
    expect(page.locator("[data-start][aria-label*='Summit Boulder']")).to_have_count(0)
    new_start = datetime.fromisoformat(slot.get_attribute("data-start") or "")
    slot.click()

    # The dialog says what changes, from -> to, and will not move it without an explicit yes.
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("heading", name="Move appointment")).to_be_visible()
    expect(dialog).to_contain_text(f"From: {old_label} · Summit Boulder · In person")
    changes = dialog.get_by_role("list", name="Changes").get_by_role("listitem")
    expect(changes).to_have_text(
        [
            "Clinic: Summit Boulder → Summit Online",
            "Time zone: Denver time → Los Angeles time",
            "Visit type: In person → Telehealth",
        ]
    )
    move = dialog.get_by_role("button", name="Move to Summit Online")
    expect(move).to_be_disabled()
    expect(dialog.get_by_role("button", name="Move appointment", exact=True)).to_have_count(0)
    dialog.get_by_label("Yes, move my appointment to Summit Online (Telehealth)").click()
    expect(move).to_be_enabled()
    move.click()

    expect(page).to_have_url(re.compile(r"/patient/appointments"))
    new_day = fmt.day_label(new_start, LOS_ANGELES)
    new_clock = fmt.local(new_start, LOS_ANGELES).strftime("%H:%M")
    expect(upcoming(page).get_by_role("article", name=re.compile(rf"^{new_day}, {new_clock}–"))).to_be_visible()
    expect(upcoming(page).get_by_role("article", name=old_label)).to_have_count(0)

    # The service moved it where the patient said yes to: Summit Online, by telehealth.
    token = api_token(app_url, CARLA)
    online = next(c["id"] for c in api_get(app_url, token, "/clinics") if c["name"] == "Summit Online")
    mine = [a for a in api_get(app_url, token, "/appointments") if a["status"] == "booked"]
    moved = [a for a in mine if datetime.fromisoformat(a["start_at"]) == new_start]
    assert [(a["clinic_id"], a["modality"]) for a in moved] == [(online, "telehealth")]
    old = httpx.get(
        f"{app_url}/api/v1/appointments/{booked['id']}", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert old.json()["status"] == "cancelled"
