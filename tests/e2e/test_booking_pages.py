"""Booking in a real browser: find care, the week view, hold and confirm, a race for one slot, cancel, reschedule.

The seeded database is shared with the other e2e tests, so these use patients nobody else books for (Emma and
Farah at Harbor, Erin and Felix at Summit) and slots four or more weeks ahead, past the seeded appointments
(which lie within three weeks). No test depends on another having run.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from backend.seed import DEMO_PASSWORD
from portal.components import format as fmt
from tests.e2e.mfa_codes import needs_code, next_code
from tests.e2e.test_portal import sign_in

pytestmark = pytest.mark.e2e

TAKEN = re.compile(r"just taken|booking this time right now")


# --- helpers -----------------------------------------------------------------------------------------


def api_token(base: str, email: str) -> str:
    body = {"email": email, "password": DEMO_PASSWORD, **({"totp": next_code(email)} if needs_code(email) else {})}
    response = httpx.post(f"{base}/api/v1/auth/token", json=body, timeout=10)
    response.raise_for_status()
    return str(response.json()["access_token"])


def api_get(base: str, token: str, path: str, **params: Any) -> Any:
    response = httpx.get(
        f"{base}/api/v1{path}", params=params, headers={"Authorization": f"Bearer {token}"}, timeout=20
    )
    response.raise_for_status()
    return response.json()


def provider_id(base: str, token: str, name: str) -> str:
    cards = [c for c in api_get(base, token, "/providers", q=name) if name in c["full_name"]]
    assert len(cards) == 1, cards
    return str(cards[0]["id"])


def monday_in(weeks: int) -> date:
    today = datetime.now(UTC).date()
    return today - timedelta(days=today.weekday()) + timedelta(weeks=weeks)


def free_slots(base: str, token: str, provider: str, start: date, days: int = 7) -> list[dict[str, Any]]:
    begin = datetime.combine(start, datetime.min.time(), tzinfo=UTC)
    return list(
        api_get(
            base,
            token,
            f"/providers/{provider}/slots",
            start=begin.isoformat(),
            end=(begin + timedelta(days=days)).isoformat(),
            include_taken="false",
        )
    )


def book_via_api(base: str, email: str, provider_name: str, weeks_ahead: int) -> dict[str, Any]:
    """Book the first free slot of the provider that week (for the patient), as a phone booking would."""
    token = api_token(base, email)
    provider = provider_id(base, token, provider_name)
    for slot in free_slots(base, token, provider, monday_in(weeks_ahead)):
        response = httpx.post(
            f"{base}/api/v1/appointments",
            json={"provider_id": provider, "start": slot["start"]},
            headers={"Authorization": f"Bearer {token}"},
            timeout=20,
        )
        if response.status_code == 201:
            return {**response.json(), "timezone": slot["timezone"], "provider": provider}
    raise AssertionError(f"no free slot for {provider_name} {weeks_ahead} weeks ahead")


def card_label(start: str, end: str, zone: str) -> str:
    """How My appointments names an appointment: 'Mon 07 Dec 2026, 11:00–11:50 PST'."""
    s, e = datetime.fromisoformat(start), datetime.fromisoformat(end)
    return f"{fmt.day_label(s, zone)}, {fmt.time_range(s, e, zone)}"


def upcoming(page: Page) -> Locator:
    return page.get_by_role("region", name="Upcoming")


def first_free(page: Page) -> Locator:
    slot = page.locator('[data-status="free"]').first
    expect(slot).to_be_visible()
    return slot


# --- (a) find, hold, confirm --------------------------------------------------------------------------


def test_patient_finds_a_provider_holds_and_confirms_a_free_slot(page: Page, app_url: str) -> None:
    sign_in(page, app_url, "felix@summit.example")
    expect(page).to_have_url(re.compile(r"/patient/?$"))
    page.get_by_role("link", name="Find care").first.click()
    expect(page.get_by_role("heading", name="Find care")).to_be_visible()

    page.get_by_label("Name").fill("Alvarez")
    page.get_by_role("button", name="Search").click()
    card = page.get_by_role("article", name=re.compile("Sofia Alvarez"))
    expect(card).to_be_visible()
    expect(page.get_by_role("article")).to_have_count(1)
    # Next free time in the clinic's zone, with the zone named.
    expect(card).to_contain_text(re.compile(r"Next free: \w{3} \d\d \w{3}, \d\d:\d\d P[SD]T \(Los Angeles time\)"))
    card.get_by_role("link", name="See times").click()

    expect(page).to_have_url(re.compile(r"/patient/provider/[0-9a-f-]{36}"))
    expect(page.get_by_role("heading", name="Sofia Alvarez, LMFT")).to_be_visible()
    expect(page.get_by_text("Times are in Los Angeles time.")).to_be_visible()
    # Four weeks on: past every seeded appointment.
    week = page.locator("#week-label")
    for _ in range(4):
        shown = week.inner_text()
        page.get_by_role("button", name="Next week").click()
        expect(week).not_to_have_text(shown)

    slot = first_free(page)
    start = slot.get_attribute("data-start")
    description = slot.get_attribute("aria-label") or ""
    slot.click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("heading", name="Confirm your appointment")).to_be_visible()
    expect(dialog).to_contain_text(re.compile(r"We're holding this time for you until \d\d:\d\d P[SD]T"))
    expect(dialog).to_contain_text("Telehealth")
    # While held, the slot is no longer free for anyone.
    expect(page.locator(f'[data-start="{start}"]')).to_have_attribute("data-status", "held")

    dialog.get_by_role("button", name="Confirm booking").click()
    expect(dialog.get_by_text("Appointment confirmed")).to_be_visible()
    dialog.get_by_role("button", name="My appointments").click()

    expect(page).to_have_url(re.compile(r"/patient/appointments"))
    day, clock = description.split(", ")[:2]  # 'Mon 21 Dec 2026', '11:00 PST'
    card = upcoming(page).get_by_role("article", name=re.compile(rf"^{re.escape(day)}, {clock[:5]}–"))
    expect(card).to_be_visible()
    expect(card).to_contain_text("Sofia Alvarez, LMFT")


# --- (b) two patients race for one slot ---------------------------------------------------------------


def test_two_patients_race_for_the_same_slot_and_exactly_one_gets_it(browser: Browser, app_url: str) -> None:
    admin = api_token(app_url, "admin@harbor.example")
    brooks = provider_id(app_url, admin, "Jordan Brooks")
    week = monday_in(5)
    contexts = [browser.new_context(viewport={"width": 1280, "height": 860}) for _ in range(2)]
    try:
        pages = []
        for context, email in zip(contexts, ("emma@harbor.example", "farah@harbor.example"), strict=True):
            context.set_default_timeout(15_000)
            page = context.new_page()
            sign_in(page, app_url, email)
            expect(page).to_have_url(re.compile(r"/patient/?$"))
            page.goto(f"{app_url}/patient/provider/{brooks}?week={week.isoformat()}")
            pages.append(page)

        start = first_free(pages[0]).get_attribute("data-start")
        slots = [p.locator(f'[data-start="{start}"]') for p in pages]
        for slot in slots:
            expect(slot).to_have_attribute("data-status", "free")
        # Both click the same free slot, one right after the other. The first hold can reach the second page live
        # before its click: the slot is then shown held and disabled, and a click on it does nothing, as for a
        # person clicking it; so that click does not wait for the button to be enabled.
        slots[0].click()
        slots[1].click(force=True)

        # One of them holds it. The other is refused; or the hold reached its page live before its click landed,
        # and it clicked a slot already shown as held (disabled: nothing happens, which is right too).
        dialogs = [p.get_by_role("dialog").get_by_role("heading", name="Confirm your appointment") for p in pages]
        deadline = time.monotonic() + 15
        while not any(dialog.is_visible() for dialog in dialogs):
            assert time.monotonic() < deadline, "neither patient was shown the confirmation"
            pages[0].wait_for_timeout(100)
        outcomes = []
        for page, dialog, slot in zip(pages, dialogs, slots, strict=True):
            if dialog.is_visible():
                outcomes.append("held")
                continue
            refused = page.get_by_role("alert").filter(has_text=TAKEN)
            expect(refused.or_(page.locator(f'[data-start="{start}"][data-status="held"]')).first).to_be_visible()
            expect(slot).to_be_disabled()
            outcomes.append("refused")
        assert sorted(outcomes) == ["held", "refused"], outcomes
        winner, loser = (pages[0], pages[1]) if outcomes[0] == "held" else (pages[1], pages[0])

        # The loser was told, and sees the slot taken; the winner confirms.
        expect(loser.locator(f'[data-start="{start}"]')).not_to_have_attribute("data-status", "free")
        expect(loser.locator(f'[data-start="{start}"]')).to_be_disabled()
        winner.get_by_role("dialog").get_by_role("button", name="Confirm booking").click()
        expect(winner.get_by_role("dialog").get_by_text("Appointment confirmed")).to_be_visible()

        # The database holds exactly one active appointment for that slot.
        assert start is not None
        at = datetime.fromisoformat(start)
        active = [
            a
            for a in api_get(
                app_url,
                admin,
                "/appointments",
                provider_id=brooks,
                start=at.isoformat(),
                end=(at + timedelta(minutes=1)).isoformat(),
            )
            if a["status"] in ("booked", "held")
        ]
        assert len(active) == 1, active
        assert active[0]["status"] == "booked"
        slots_now = api_get(
            app_url,
            admin,
            f"/providers/{brooks}/slots",
            start=at.isoformat(),
            end=(at + timedelta(minutes=1)).isoformat(),
        )
        assert [s["status"] for s in slots_now if datetime.fromisoformat(s["start"]) == at] == ["booked"]
    finally:
        for context in contexts:
            context.close()


# --- (c) cancel ----------------------------------------------------------------------------------------


def test_patient_cancels_an_appointment_and_it_leaves_upcoming(page: Page, app_url: str) -> None:
    booked = book_via_api(app_url, "erin@summit.example", "Nils Lindqvist", weeks_ahead=4)
    label = card_label(booked["start_at"], booked["end_at"], booked["timezone"])

    sign_in(page, app_url, "erin@summit.example")
    expect(page).to_have_url(re.compile(r"/patient/?$"))
    page.get_by_role("link", name="My appointments").first.click()
    card = upcoming(page).get_by_role("article", name=label)
    expect(card).to_be_visible()
    card.get_by_role("button", name="Cancel").click()

    dialog = page.get_by_role("alertdialog")
    expect(dialog).to_contain_text(label)
    # Four weeks ahead: well outside any cancellation window.
    expect(dialog).not_to_contain_text("late cancellation")
    dialog.get_by_label("Reason (optional)").fill("Feeling better")
    dialog.get_by_role("button", name="Cancel appointment").click()

    expect(dialog).to_have_count(0)
    expect(upcoming(page).get_by_role("article", name=label)).to_have_count(0)
    day, times = label.split(", ")
    past = page.get_by_role("region", name="Past and cancelled").get_by_role("row").filter(has_text=day)
    expect(past.filter(has_text=times)).to_contain_text("Cancelled")


# --- (d) reschedule ------------------------------------------------------------------------------------


def test_patient_reschedules_an_appointment_to_another_free_time(page: Page, app_url: str) -> None:
    booked = book_via_api(app_url, "erin@summit.example", "Amara Okafor", weeks_ahead=6)
    old_label = card_label(booked["start_at"], booked["end_at"], booked["timezone"])

    sign_in(page, app_url, "erin@summit.example")
    expect(page).to_have_url(re.compile(r"/patient/?$"))
    page.goto(f"{app_url}/patient/appointments")
    upcoming(page).get_by_role("article", name=old_label).get_by_role("button", name="Reschedule").click()

    expect(page).to_have_url(re.compile(rf"/patient/provider/{booked['provider']}\?reschedule={booked['id']}"))
    expect(page.get_by_text("Choose a new time for your appointment of")).to_contain_text(old_label)
    expect(page.locator('[data-status="current"]')).to_have_count(1)

    slot = first_free(page)
    new_start = datetime.fromisoformat(slot.get_attribute("data-start") or "")
    slot.click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("heading", name="Move appointment")).to_be_visible()
    expect(dialog).to_contain_text("From: " + old_label)
    dialog.get_by_role("button", name="Move appointment").click()

    expect(page).to_have_url(re.compile(r"/patient/appointments"))
    new_day = fmt.day_label(new_start, booked["timezone"])
    new_clock = fmt.local(new_start, booked["timezone"]).strftime("%H:%M")
    expect(upcoming(page).get_by_role("article", name=re.compile(rf"^{new_day}, {new_clock}–"))).to_be_visible()
    expect(upcoming(page).get_by_role("article", name=old_label)).to_have_count(0)
    old_day, old_times = old_label.split(", ")
    past = page.get_by_role("region", name="Past and cancelled").get_by_role("row").filter(has_text=old_day)
    expect(past.filter(has_text=old_times)).to_contain_text("Moved")
