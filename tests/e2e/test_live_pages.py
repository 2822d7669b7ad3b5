"""Every page that shows appointments, slots or waitlists updates by itself (issue 10, item 3), in a real browser.

Two or more browser contexts: the doctor's Today and Schedule pages, the patient's My appointments and another
patient's booking grid stay open while the change happens through the API; Playwright's `expect` waits for each
page to show it, without a reload. Then a held slot on another patient's grid, and an offer that runs out.

Uses Harbor's Jordan Brooks (no other e2e test does) with patients David (books, holds, is offered) and Emma (only
looks at the grid); afternoon times, clear of Farah's seeded waitlist mornings with Jordan, and weeks 11-12 ahead
for the hold and the offer.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect

from tests.conftest import TEST_DB_NAME, _db_url
from tests.e2e.test_booking_pages import api_get, api_token, card_label, free_slots, monday_in, provider_id
from tests.e2e.test_portal import sign_in

pytestmark = pytest.mark.e2e

JORDAN = "Jordan Brooks"
CHICAGO = ZoneInfo("America/Chicago")
DAVID, EMMA, DOCTOR = "david@harbor.example", "emma@harbor.example", "jordan.brooks@harbor.example"


def _api(base: str, token: str, method: str, path: str, **body: Any) -> httpx.Response:
    return httpx.request(
        method, f"{base}/api/v1{path}", json=body or None, headers={"Authorization": f"Bearer {token}"}, timeout=20
    )


def _context(browser: Browser) -> BrowserContext:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(15_000)
    return ctx


def _signed_in(ctx: BrowserContext, base: str, email: str, home: str) -> Page:
    page = ctx.new_page()
    sign_in(page, base, email)
    expect(page).to_have_url(re.compile(rf"/{home}/?$"))
    return page


def _local(start: str) -> datetime:
    return datetime.fromisoformat(start).astimezone(CHICAGO)


def _grid_slot(page: Page, start: str) -> Locator:
    return page.locator(f'[data-start="{datetime.fromisoformat(start).astimezone(UTC).isoformat()}"]')


def _open_grid(ctx: BrowserContext, base: str, jordan: str, start: str) -> Page:
    """Emma looks at Jordan's week of `start`."""
    page = _signed_in(ctx, base, EMMA, "patient")
    page.goto(f"{base}/patient/provider/{jordan}?week={_local(start).date().isoformat()}")
    expect(page.get_by_role("heading", name=re.compile(JORDAN))).to_be_visible()
    return page


def _afternoon(slots: list[dict[str, Any]], busy: list[tuple[datetime, datetime]]) -> dict[str, Any]:
    """The first slot from 13:00 Chicago time that does not clash with the patient's own appointments."""
    for slot in slots:
        start, end = datetime.fromisoformat(slot["start"]), datetime.fromisoformat(slot["end"])
        if _local(slot["start"]).hour >= 13 and not any(s < end and start < e for s, e in busy):
            return slot
    raise AssertionError("Jordan has no free afternoon")


def _busy(base: str, token: str) -> list[tuple[datetime, datetime]]:
    return [
        (datetime.fromisoformat(a["start_at"]), datetime.fromisoformat(a["end_at"]))
        for a in api_get(base, token, "/appointments")
        if a["status"] in ("booked", "held")
    ]


def test_a_booking_and_its_cancellation_show_on_every_page_without_a_reload(browser: Browser, app_url: str) -> None:
    david = api_token(app_url, DAVID)
    doctor = api_token(app_url, DOCTOR)
    jordan = provider_id(app_url, david, JORDAN)
    now = datetime.now(UTC)
    # Within the next seven days (the doctor's Today page counts those), in the afternoon.
    soon = api_get(
        app_url,
        david,
        f"/providers/{jordan}/slots",
        start=now.isoformat(),
        end=(now + timedelta(days=6, hours=20)).isoformat(),
        include_taken="false",
    )
    slot = _afternoon(soon, _busy(app_url, david))
    local = _local(slot["start"])
    item_name = f"{local:%H:%M}–{_local(slot['end']):%H:%M} {local.tzname()} David Kim"
    card = card_label(slot["start"], slot["end"], slot["timezone"])

    contexts = [_context(browser) for _ in range(3)]
    try:
        # The doctor: Today, and the Schedule on the slot's day (two tabs).
        today = _signed_in(contexts[0], app_url, DOCTOR, "doctor")
        # Loaded once the day's date is there (the counts come with it).
        expect(today.get_by_text(re.compile(r"^\w+day \d\d \w+ \d{4}$"))).to_be_visible()
        next_week = today.get_by_text("Next 7 days", exact=True).locator("xpath=following-sibling::*[1]")
        expect(next_week).to_have_text(re.compile(r"^\d+$"))
        before = int(next_week.inner_text())
        # Its row on Today (today's table, or Coming up), and none yet.
        row = today.get_by_role("row").filter(has_text=f"{local:%H:%M}–").filter(has_text="David Kim")
        expect(row).to_have_count(0)
        schedule = contexts[0].new_page()
        schedule.goto(f"{app_url}/doctor/schedule")
        expect(schedule.get_by_role("heading", name="Schedule", exact=True)).to_be_visible()
        schedule.get_by_label("Go to date").fill(local.date().isoformat())
        expect(schedule.get_by_role("heading", name=f"{local:%A %d %B %Y}")).to_be_visible()
        session = schedule.get_by_role("listitem", name=item_name)
        expect(session).to_have_count(0)
        # The patient: My appointments.
        mine = _signed_in(contexts[1], app_url, DAVID, "patient")
        mine.goto(f"{app_url}/patient/appointments")
        expect(mine.get_by_role("heading", name="Upcoming")).to_be_visible()
        upcoming = mine.get_by_role("article", name=card)
        expect(upcoming).to_have_count(0)
        # Another patient: Jordan's booking grid, the slot free.
        grid = _open_grid(contexts[2], app_url, jordan, slot["start"])
        expect(_grid_slot(grid, slot["start"])).to_have_attribute("data-status", "free")

        booked = _api(app_url, david, "POST", "/appointments", provider_id=jordan, start=slot["start"])
        assert booked.status_code == 201, booked.text
        expect(next_week).to_have_text(str(before + 1))
        expect(row).to_have_count(1)
        expect(session).to_have_count(1)
        expect(upcoming).to_have_count(1)
        expect(_grid_slot(grid, slot["start"])).to_have_attribute("data-status", "booked")

        # The practice cancels it: gone from the doctor's pages and the patient's, free again on the grid.
        cancelled = _api(app_url, doctor, "POST", f"/appointments/{booked.json()['id']}/cancel", reason="Clinic closed")
        assert cancelled.status_code == 200, cancelled.text
        expect(next_week).to_have_text(str(before))
        expect(row).to_have_count(0)
        expect(session).to_have_count(0)
        expect(upcoming).to_have_count(0)
        expect(_grid_slot(grid, slot["start"])).to_have_attribute("data-status", "free")
    finally:
        for ctx in contexts:
            ctx.close()


def test_a_held_slot_shows_as_held_on_another_patients_grid_and_frees_on_release(
    browser: Browser, app_url: str
) -> None:
    david = api_token(app_url, DAVID)
    jordan = provider_id(app_url, david, JORDAN)
    slot = _afternoon(free_slots(app_url, david, jordan, monday_in(11)), _busy(app_url, david))
    ctx = _context(browser)
    hold_id = None
    try:
        grid = _open_grid(ctx, app_url, jordan, slot["start"])
        cell = _grid_slot(grid, slot["start"])
        expect(cell).to_have_attribute("data-status", "free")
        held = _api(app_url, david, "POST", "/holds", provider_id=jordan, start=slot["start"])
        assert held.status_code == 201, held.text
        hold_id = held.json()["id"]
        # Held, not taken: said so, and not bookable.
        expect(cell).to_have_attribute("data-status", "held")
        expect(cell).to_contain_text("Held")
        expect(cell).to_be_disabled()
        released = _api(app_url, david, "DELETE", f"/holds/{hold_id}")
        assert released.status_code == 204, released.text
        hold_id = None
        expect(cell).to_have_attribute("data-status", "free")
        expect(cell).to_be_enabled()
    finally:
        if hold_id is not None:
            _api(app_url, david, "DELETE", f"/holds/{hold_id}")
        ctx.close()


def _expire_soon(offer_id: str, seconds: int) -> None:
    """Move the offer's (and its hold's) expiry to `seconds` from now, as if its hold time were that short."""
    url = _db_url(f"{TEST_DB_NAME}_e2e").replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "UPDATE waitlist_offers SET expires_at = now() + make_interval(secs => %s) WHERE id = %s",
            (seconds, offer_id),
        )
        conn.execute(
            "UPDATE appointments SET hold_expires_at = now() + make_interval(secs => %s)"
            " WHERE id = (SELECT appointment_id FROM waitlist_offers WHERE id = %s)",
            (seconds, offer_id),
        )


def test_an_offer_that_runs_out_disables_accept_at_zero_and_says_it_expired(page: Page, app_url: str) -> None:
    david = api_token(app_url, DAVID)
    doctor = api_token(app_url, DOCTOR)
    jordan = provider_id(app_url, david, JORDAN)
    westside = next(c["id"] for c in api_get(app_url, david, "/clinics") if c["name"] == "Harbor Westside")
    # Saturday mornings: Jordan never works then, so no sweep offers David anything by itself.
    joined = _api(
        app_url,
        david,
        "POST",
        "/waitlists",
        clinic_id=westside,
        provider_id=jordan,
        windows=[{"weekday": 5, "start": "10:00", "end": "12:00"}],
        urgency=2,
    )
    assert joined.status_code == 201, joined.text
    entry_id = joined.json()["id"]
    try:
        slot = _afternoon(free_slots(app_url, doctor, jordan, monday_in(12)), _busy(app_url, david))
        invited = _api(app_url, doctor, "POST", f"/waitlists/{entry_id}/invite", start=slot["start"])
        assert invited.status_code == 201, invited.text
        _expire_soon(invited.json()["id"], 30)

        sign_in(page, app_url, DAVID)
        expect(page).to_have_url(re.compile(r"/patient/?$"))
        page.goto(f"{app_url}/patient/waitlist")
        entry = page.get_by_role("article", name=JORDAN)
        offer = entry.get_by_role("region", name="Offer")
        expect(offer).to_be_visible()
        accept = offer.get_by_role("button", name="Accept")
        expect(accept).to_be_enabled()
        # 0:00: Accept is disabled at once, and the card says the offer expired.
        expect(offer.get_by_role("timer")).to_have_text("0:00", timeout=45_000)
        expect(accept).to_be_disabled()
        expect(offer.get_by_role("status")).to_have_text(re.compile(r"^This offer expired at \d\d:\d\d [A-Z]{3}\.$"))
        # Once the practice has expired it (its sweep), the entry says so rather than silently going back to Waiting.
        notice = entry.locator(".offer-expired-notice")
        expect(notice).to_contain_text(re.compile(r"Your offer of .+ expired at \d\d:\d\d"), timeout=30_000)
        expect(notice).to_contain_text("You keep your place on the waitlist.")
        expect(offer).to_have_count(0)
    finally:
        _api(app_url, david, "DELETE", f"/waitlists/{entry_id}")
