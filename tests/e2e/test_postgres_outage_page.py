"""Issue 10 item 8, the pages: while PostgreSQL is away, a page says "Cannot reach the database, retrying…" (not a
crash, not a blank page) and, when the database is back, loads its data again by itself, without a reload.

The app reaches the database through the session's proxy (tests/pg_proxy.py, see conftest.pg_proxy): the outage
resets every open connection and refuses new ones; the shared PostgreSQL server itself is never touched.
Uses Dr. Rivera, whose schedule the other e2e tests only read.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Page, expect

from portal.state.outage import DB_BACK_TITLE, DB_DOWN_TITLE
from tests.e2e.test_portal import sign_in
from tests.pg_proxy import PgProxy

pytestmark = pytest.mark.e2e


@pytest.fixture
def outage(pg_proxy: PgProxy) -> Iterator[PgProxy]:
    """The proxy, always brought back up after the test (the other e2e tests need the database)."""
    try:
        yield pg_proxy
    finally:
        pg_proxy.up()


def test_a_page_says_the_database_is_away_and_loads_again_when_it_is_back(
    page: Page, app_url: str, outage: PgProxy
) -> None:
    sign_in(page, app_url, "dr.rivera@harbor.example")
    expect(page).to_have_url(re.compile(r"/doctor/?$"))
    expect(page.get_by_role("heading", name="Today's schedule")).to_be_visible()
    page.evaluate("window.__noReload = 'doctor'")

    # The database goes away; the doctor opens the Schedule page (its handlers need the database).
    outage.down()
    page.get_by_role("link", name="Schedule").click()
    expect(page).to_have_url(re.compile(r"/doctor/schedule/?$"))
    toast = page.locator("[data-sonner-toast]").filter(has_text=DB_DOWN_TITLE)
    notice = page.locator(".database-outage")  # where the page would be
    expect(toast).to_be_visible(timeout=15_000)
    expect(notice).to_have_text(DB_DOWN_TITLE, timeout=15_000)
    expect(page.get_by_text("An error occurred")).to_have_count(0)

    # It comes back: the page loads its data by itself, without a reload, and the message goes.
    outage.up()
    back = 15_000  # the tab probes every 2 s: allow for a busy machine
    expect(page.get_by_text(DB_BACK_TITLE)).to_be_visible(timeout=back)
    today = datetime.now(ZoneInfo("America/New_York")).date()
    expect(page.get_by_role("heading", name=today.strftime("%A %d %B %Y"))).to_be_visible(timeout=back)
    appointments = page.get_by_role("list", name="Appointments")
    expect(appointments.get_by_role("listitem").filter(has_text="Alice Morgan")).to_be_visible()
    expect(toast).to_have_count(0)
    expect(notice).to_have_count(0)
    assert page.evaluate("window.__noReload") == "doctor"

    # And it keeps working: another page opens as usual.
    page.get_by_role("link", name="Today").click()
    expect(page.get_by_role("heading", name="Today's schedule")).to_be_visible()
