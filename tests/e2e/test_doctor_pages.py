"""The doctor's schedule and availability pages in a real browser.

Data-changing tests use doctors no other e2e test reads (Okafor, Lindqvist, Alvarez); Rivera's schedule is
only read. Every test stands alone: it finds what it needs instead of relying on another test's leftovers.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.sync_api import Page, expect

from backend.seed import DEMO_PASSWORD
from tests.e2e.test_portal import sign_in

pytestmark = pytest.mark.e2e

NEW_YORK = ZoneInfo("America/New_York")
DENVER = ZoneInfo("America/Denver")
LOS_ANGELES = ZoneInfo("America/Los_Angeles")


# --- REST helpers: the API is the independent witness of what a page changed --------------------------


def _token(base: str, email: str) -> dict[str, str]:
    response = httpx.post(f"{base}/api/v1/auth/token", json={"email": email, "password": DEMO_PASSWORD}, timeout=10)
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def _provider_id(base: str, headers: dict[str, str]) -> str:
    response = httpx.get(f"{base}/api/v1/me", headers=headers, timeout=10)
    response.raise_for_status()
    return str(response.json()["provider_id"])


def _slots(
    base: str, headers: dict[str, str], provider_id: str, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{base}/api/v1/providers/{provider_id}/slots",
        params={"start": start.astimezone(UTC).isoformat(), "end": end.astimezone(UTC).isoformat()},
        headers=headers,
        timeout=10,
    )
    response.raise_for_status()
    return list(response.json())


def _local(day: date, hour: int, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(hour, 0), tzinfo=zone)


def _next_week(zone: ZoneInfo, weekday: int) -> date:
    today = datetime.now(zone).date()
    return today + timedelta(days=7 - today.weekday() + weekday)


# --- schedule ----------------------------------------------------------------------------------------


def test_doctor_sees_todays_appointments_by_day_and_by_week(page: Page, app_url: str) -> None:
    sign_in(page, app_url, "dr.rivera@harbor.example")
    expect(page).to_have_url(re.compile(r"/doctor/?$"))
    page.get_by_role("link", name="Schedule").click()
    expect(page).to_have_url(re.compile(r"/doctor/schedule/?$"))

    today = datetime.now(NEW_YORK).date()
    expect(page.get_by_role("heading", name=today.strftime("%A %d %B %Y"))).to_be_visible()
    expect(page.get_by_text(re.compile(r"in New York time \(America/New_York\)"))).to_be_visible()
    day = page.get_by_role("list", name="Appointments")
    # Seeded: Alice Morgan at 10:00 and Ben Okoro at 11:00, Harbor Downtown, in New York time.
    alice = day.get_by_role("listitem").filter(has_text="Alice Morgan")
    ben = day.get_by_role("listitem").filter(has_text="Ben Okoro")
    expect(alice).to_contain_text(re.compile(r"10:00–10:50 E[SD]T"))
    expect(alice).to_contain_text("Harbor Downtown")
    expect(ben).to_contain_text(re.compile(r"11:00–11:50 E[SD]T"))

    page.get_by_role("radio", name="Week").click()
    expect(page.get_by_role("heading", name=re.compile(r"^Week of "))).to_be_visible()
    expect(page.locator(".week-column")).to_have_count(7)
    expect(page.locator(".week-column").first).to_have_attribute("aria-label", re.compile(r"^Mon "))
    today_column = page.get_by_role("group", name=f"{today:%a} {today:%d %b}")
    expect(today_column.locator(".schedule-chip").filter(has_text="Alice Morgan")).to_contain_text("10:00")
    expect(today_column.locator(".schedule-chip").filter(has_text="Ben Okoro")).to_contain_text("11:00")

    # A column's header opens that day.
    today_column.get_by_role("button").click()
    expect(page.get_by_role("list", name="Appointments").get_by_text("Alice Morgan")).to_be_visible()


def test_doctor_cancels_a_future_appointment_with_a_reason(page: Page, app_url: str) -> None:
    headers = _token(app_url, "sofia.alvarez@summit.example")
    now = datetime.now(UTC)
    # Seeded appointments lie within three weeks; the booking tests book four or more weeks ahead.
    response = httpx.get(
        f"{app_url}/api/v1/appointments",
        params={"start": (now + timedelta(days=1)).isoformat(), "end": (now + timedelta(days=21)).isoformat()},
        headers=headers,
        timeout=10,
    )
    response.raise_for_status()
    booked = [a for a in response.json() if a["status"] == "booked"]
    assert booked, "the demo seed books upcoming sessions for every provider"
    target = booked[0]
    start = datetime.fromisoformat(target["start_at"]).astimezone(LOS_ANGELES)

    sign_in(page, app_url, "sofia.alvarez@summit.example")
    expect(page).to_have_url(re.compile(r"/doctor/?$"))
    page.goto(f"{app_url}/doctor/schedule")
    page.get_by_label("Go to date").fill(start.date().isoformat())
    expect(page.get_by_role("heading", name=start.strftime("%A %d %B %Y"))).to_be_visible()
    item = page.get_by_role("listitem").filter(has_text=f"{start:%H:%M}–").filter(has_text=target["patient_name"])
    expect(item).to_be_visible()

    item.get_by_role("button", name="Cancel").click()
    dialog = page.get_by_role("alertdialog")
    expect(dialog).to_contain_text(target["patient_name"])
    dialog.get_by_label("Reason (optional, kept on record)").fill("Clinician unwell")
    dialog.get_by_role("button", name="Cancel appointment").click()
    expect(page.get_by_text("Appointment cancelled.")).to_be_visible()
    expect(item).to_have_count(0)

    after = httpx.get(f"{app_url}/api/v1/appointments/{target['id']}", headers=headers, timeout=10)
    assert after.json()["status"] == "cancelled"


def test_held_slot_shows_as_held_without_the_patient(page: Page, app_url: str) -> None:
    doctor = _token(app_url, "dr.lindqvist@summit.example")
    provider_id = _provider_id(app_url, doctor)
    patient = _token(app_url, "hiro@summit.example")
    # A Wednesday two weeks ahead: clear of the other tests' days.
    wednesday = _next_week(DENVER, 2) + timedelta(days=7)
    free = [
        s
        for s in _slots(app_url, patient, provider_id, _local(wednesday, 0, DENVER), _local(wednesday, 23, DENVER))
        if s["status"] == "free"
    ]
    assert free, "Lindqvist works Wednesdays"
    response = httpx.post(
        f"{app_url}/api/v1/holds", json={"provider_id": provider_id, "start": free[-1]["start"]}, headers=patient
    )
    response.raise_for_status()
    hold_id = response.json()["id"]
    try:
        sign_in(page, app_url, "dr.lindqvist@summit.example")
        expect(page).to_have_url(re.compile(r"/doctor/?$"))
        page.goto(f"{app_url}/doctor/schedule")
        page.get_by_role("radio", name="Week").click()
        expect(page.locator(".week-column")).to_have_count(7)
        page.get_by_label("Go to date").fill(wednesday.isoformat())
        column = page.get_by_role("group", name=f"{wednesday:%a} {wednesday:%d %b}")
        held = datetime.fromisoformat(free[-1]["start"]).astimezone(DENVER)
        chip = column.locator(".schedule-chip").filter(has_text=f"{held:%H:%M}")
        expect(chip).to_contain_text("Held slot")
        expect(page.get_by_text("Hiro Tanaka")).to_have_count(0)
    finally:
        httpx.delete(f"{app_url}/api/v1/holds/{hold_id}", headers=patient, timeout=10)


# --- availability ------------------------------------------------------------------------------------


def test_doctor_adds_time_off_and_the_slots_disappear_then_removes_it(page: Page, app_url: str) -> None:
    headers = _token(app_url, "dr.okafor@summit.example")
    provider_id = _provider_id(app_url, headers)
    # Okafor works Tuesdays 09:00–17:00 at Summit Boulder (Denver time). Eight weeks ahead nothing of his is booked
    # (the seed books within three weeks; other tests book him in weeks 6 and 9), so the time off covers no session.
    tuesday = _next_week(DENVER, 1) + timedelta(weeks=7)
    start, end = _local(tuesday, 9, DENVER), _local(tuesday, 17, DENVER)
    assert _slots(app_url, headers, provider_id, start, end), "next Tuesday has sessions before the time off"

    sign_in(page, app_url, "dr.okafor@summit.example")
    expect(page).to_have_url(re.compile(r"/doctor/?$"))
    page.get_by_role("link", name="Availability").click()
    expect(page.get_by_role("heading", name="Time off", exact=True)).to_be_visible()
    expect(page.get_by_text(re.compile(r"Dates and times are in\s+Denver time \(America/Denver\)"))).to_be_visible()

    reason = f"Conference {secrets.token_hex(3)}"
    page.get_by_label("Start date").fill(tuesday.isoformat())
    page.get_by_label("Start time").fill("09:00")
    page.get_by_label("End date").fill(tuesday.isoformat())
    page.get_by_label("End time").fill("17:00")
    page.get_by_label("Reason (optional)").fill(reason)
    page.get_by_role("button", name="Add time off").click()

    listed = page.get_by_role("list", name="Upcoming time off").get_by_role("listitem").filter(has_text=reason)
    expect(listed).to_contain_text(f"{tuesday:%a %d %b %Y}, 09:00–17:00 {start.tzname()}")
    assert _slots(app_url, headers, provider_id, start, end) == []

    listed.get_by_role("button", name=re.compile(r"^Remove")).click()
    expect(listed).to_have_count(0)
    assert _slots(app_url, headers, provider_id, start, end), "removing the time off reopens the sessions"


def test_time_off_form_explains_what_is_missing_and_saves_nothing(page: Page, app_url: str) -> None:
    sign_in(page, app_url, "dr.okafor@summit.example")
    page.goto(f"{app_url}/doctor/availability")
    day = _next_week(DENVER, 2)
    page.get_by_label("Start date").fill(day.isoformat())
    page.get_by_label("Start time").fill("15:00")
    page.get_by_label("End date").fill(day.isoformat())
    page.get_by_label("End time").fill("11:00")
    page.get_by_role("button", name="Add time off").click()
    expect(page.locator("#err-time-off-end_date")).to_have_text("The end must be after the start.")
    expect(page.get_by_label("End date")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("End date")).to_have_attribute("aria-describedby", "err-time-off-end_date")
    from tests.e2e.test_onboarding import shot

    shot(page, "doctor-time-off-error")
    # The typed values stay for correcting.
    expect(page.get_by_label("Start time")).to_have_value("15:00")
    listed = page.get_by_role("list", name="Upcoming time off").get_by_role("listitem")
    expect(listed.filter(has_text=f"{day:%a %d %b %Y}, 15:00")).to_have_count(0)


def test_invalid_weekly_hours_show_the_error_and_change_nothing(page: Page, app_url: str) -> None:
    headers = _token(app_url, "dr.lindqvist@summit.example")
    provider_id = _provider_id(app_url, headers)
    monday = _next_week(DENVER, 0)
    before = _slots(app_url, headers, provider_id, _local(monday, 0, DENVER), _local(monday, 23, DENVER))
    assert before, "Lindqvist works Mondays"

    sign_in(page, app_url, "dr.lindqvist@summit.example")
    page.goto(f"{app_url}/doctor/availability")
    end_first = page.get_by_label("End, row 1")
    expect(end_first).to_have_value("18:00")
    # The editor fits a 1280-wide screen without scrolling sideways.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    expect(page.get_by_label("Start, row 1")).to_have_value("10:00")
    end_first.fill("09:00")
    page.get_by_role("button", name="Save hours").click()

    error = page.locator("#hours-error")
    expect(error).to_be_visible()
    expect(error).not_to_be_empty()
    # The edit is kept for correcting, and marked unsaved.
    expect(end_first).to_have_value("09:00")
    expect(page.get_by_text("Unsaved changes")).to_be_visible()

    page.reload()
    expect(page.get_by_label("End, row 1")).to_have_value("18:00")
    after = _slots(app_url, headers, provider_id, _local(monday, 0, DENVER), _local(monday, 23, DENVER))
    assert [s["start"] for s in after] == [s["start"] for s in before]


def test_doctor_adds_weekly_hours_and_patients_can_book_them(page: Page, app_url: str) -> None:
    headers = _token(app_url, "sofia.alvarez@summit.example")
    provider_id = _provider_id(app_url, headers)
    saturday = _next_week(LOS_ANGELES, 5)
    day_start, day_end = _local(saturday, 0, LOS_ANGELES), _local(saturday, 23, LOS_ANGELES)
    assert _slots(app_url, headers, provider_id, day_start, day_end) == [], "Alvarez does not work Saturdays"

    sign_in(page, app_url, "sofia.alvarez@summit.example")
    expect(page).to_have_url(re.compile(r"/doctor/?$"))
    page.goto(f"{app_url}/doctor/availability")
    expect(page.get_by_label("End, row 5")).to_be_visible()
    expect(page.get_by_label("End, row 6")).to_have_count(0)
    page.get_by_role("button", name="Add row").click()
    page.get_by_role("combobox", name="Weekday, row 6").click()
    page.get_by_role("option", name="Saturday").click()
    expect(page.get_by_role("combobox", name="Clinic, row 6")).to_have_text("Summit Online")
    page.get_by_label("Start, row 6").fill("10:00")
    page.get_by_label("End, row 6").fill("12:00")
    page.get_by_role("button", name="Save hours").click()
    expect(page.get_by_text("Weekly hours saved.")).to_be_visible()
    expect(page.get_by_text("Unsaved changes")).to_have_count(0)

    slots = _slots(app_url, headers, provider_id, day_start, day_end)
    starts = [datetime.fromisoformat(s["start"]).astimezone(LOS_ANGELES).strftime("%H:%M") for s in slots]
    assert starts == ["10:00", "11:00"]
    assert {s["modality"] for s in slots} == {"telehealth"}

    # Put the week back as it was.
    page.reload()
    expect(page.get_by_role("combobox", name="Weekday, row 6")).to_have_text("Saturday")
    page.get_by_role("button", name="Remove, row 6").click()
    page.get_by_role("button", name="Save hours").click()
    expect(page.get_by_text("Weekly hours saved.")).to_be_visible()
    assert _slots(app_url, headers, provider_id, day_start, day_end) == []


def test_patient_cannot_open_doctor_pages(page: Page, app_url: str) -> None:
    sign_in(page, app_url, "hiro@summit.example")
    expect(page).to_have_url(re.compile(r"/patient/?$"))
    for path in ("/doctor/availability", "/doctor/schedule"):
        page.goto(f"{app_url}{path}")
        expect(page.get_by_role("heading", name="This page is for clinic staff")).to_be_visible()
        expect(page.get_by_role("link", name="Go to your home")).to_have_attribute("href", re.compile(r"/patient/?$"))
        expect(page.get_by_role("heading", name="Availability")).to_have_count(0)
        expect(page.get_by_role("button", name="Save hours")).to_have_count(0)
