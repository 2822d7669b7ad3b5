"""Steps several end-to-end stories share: a refused sign-in, and a new patient's first booking."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.e2e.test_booking_pages import first_free, upcoming


def sign_in_is_refused(page: Page, email: str, password: str) -> None:
    """On the sign-in page: this e-mail and password do not sign in."""
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("button[type=submit]")
    expect(page.get_by_role("alert")).to_contain_text("Incorrect email or password")


def book_with_brooks(page: Page, weeks_ahead: int) -> None:
    """As the signed-in patient: find Jordan Brooks, book the first free time `weeks_ahead` weeks on (past the
    seeded appointments and other tests' slots), and see it among the upcoming appointments."""
    page.get_by_role("link", name="Find care").first.click()
    page.get_by_label("Name").fill("Brooks")
    page.get_by_role("button", name="Search").click()
    card = page.get_by_role("article", name=re.compile("Jordan Brooks"))
    card.get_by_role("link", name="See times").click()
    week = page.locator("#week-label")
    for _ in range(weeks_ahead):
        shown = week.inner_text()
        page.get_by_role("button", name="Next week").click()
        expect(week).not_to_have_text(shown)
    slot = first_free(page)
    description = slot.get_attribute("aria-label") or ""
    slot.click()
    booking = page.get_by_role("dialog")
    booking.get_by_role("button", name="Confirm booking").click()
    expect(booking.get_by_text("Appointment confirmed")).to_be_visible()
    booking.get_by_role("button", name="My appointments").click()
    day, clock = description.split(", ")[:2]
    expect(upcoming(page).get_by_role("article", name=re.compile(rf"^{re.escape(day)}, {clock[:5]}–"))).to_be_visible()
