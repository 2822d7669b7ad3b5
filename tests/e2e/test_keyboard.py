"""Keyboard only: a patient books, joins a waitlist and accepts an offer with Tab, Shift+Tab, Enter, Space and typing.

No mouse: every step moves focus with the keyboard (`tab_to` presses Tab until the target has focus, so it also
proves the target is reachable) and checks that the focused control shows a focus ring. The seeded database is
shared with the other e2e tests: these use Farah (Harbor) and Dr. Wei Chen, whom no other e2e test books or
offers, four and six weeks ahead; the waitlist entry is bounded to that week so no sweep offers it anything else.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import datetime, timedelta

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from backend.seed import DEMO_PASSWORD
from tests.e2e.axe import BLOCKING, axe_source, scan
from tests.e2e.mfa_codes import needs_code
from tests.e2e.test_booking_pages import api_get, api_token, free_slots, monday_in, provider_id
from tests.e2e.test_portal import sign_in

pytestmark = pytest.mark.e2e

FARAH = "farah@harbor.example"
CHEN = "Dr. Wei Chen"
TAB_LIMIT = 80

# The focused element (or, for a text field, the box around it) draws an outline ring, possibly on a pseudo-element.
_FOCUS_RING_JS = """() => {
  const el = document.activeElement;
  const rings = (e) => [getComputedStyle(e), getComputedStyle(e, "::before"), getComputedStyle(e, "::after")]
    .some((s) => s.outlineStyle !== "none" && parseFloat(s.outlineWidth) > 0);
  return !!el && el !== document.body && (rings(el) || (!!el.parentElement && rings(el.parentElement)));
}"""


@pytest.fixture
def kb_page(browser: Browser) -> Iterator[Page]:
    # en-US: date fields take typed digits as month, day, year. bypass_csp: axe is injected in two states that the
    # page scan (test_accessibility.py) does not reach, the booking dialog and a live offer.
    context = browser.new_context(viewport={"width": 1280, "height": 860}, locale="en-US", bypass_csp=True)
    context.set_default_timeout(15_000)
    yield context.new_page()
    context.close()


def has_focus(target: Locator) -> bool:
    return bool(target.evaluate("el => el === document.activeElement || el.contains(document.activeElement)"))


def tab_to(page: Page, target: Locator, *, back: bool = False) -> None:
    """Press Tab (or Shift+Tab) until `target` has focus; fail if it is never reached or shows no focus ring."""
    expect(target).to_be_visible()
    for _ in range(TAB_LIMIT):
        if has_focus(target):
            break
        page.keyboard.press("Shift+Tab" if back else "Tab")
    else:
        raise AssertionError(f"{target} is not reachable with the keyboard")
    assert page.evaluate(_FOCUS_RING_JS), f"no visible focus on {target}"


def shot(page: Page, name: str) -> None:
    """With A11Y_SCREENSHOTS set to a folder, keep a screenshot of this step."""
    if folder := os.environ.get("A11Y_SCREENSHOTS"):
        page.screenshot(path=f"{folder}/keyboard-{name}.png")


def assert_no_serious_violations(page: Page, where: str) -> None:
    blocking = [v for v in scan(page, axe_source(), where) if v.impact in BLOCKING]
    assert not blocking, "\n".join(str(v) for v in blocking)


def sign_in_by_keyboard(page: Page, app_url: str, email: str, home: str = "patient") -> None:
    page.goto(f"{app_url}/login")
    tab_to(page, page.locator("#email"))
    page.keyboard.type(email)
    page.keyboard.press("Tab")
    expect(page.locator("#password")).to_be_focused()
    page.keyboard.type(DEMO_PASSWORD)
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(rf"/{home}/?$"))


def choose(page: Page, trigger: Locator, option: str) -> None:
    """Open a select with Space, move to the option with the arrow keys, take it with Enter."""
    tab_to(page, trigger)
    page.keyboard.press("Space")
    wanted = page.get_by_role("option", name=option, exact=True)
    expect(wanted).to_be_visible()
    for _ in range(30):
        if has_focus(wanted):
            break
        page.keyboard.press("ArrowDown")
    else:
        raise AssertionError(f"option {option!r} not reached with the arrow keys")
    page.keyboard.press("Enter")
    expect(trigger).to_contain_text(option)
    expect(trigger).to_be_focused()


def type_date(page: Page, field: Locator, value: str) -> None:
    """Type an ISO date into a date field as month, day, year digits."""
    tab_to(page, field)
    year, month, day = value.split("-")
    page.keyboard.type(f"{month}{day}{year}")
    expect(field).to_have_value(value)


_DESCRIBE_FOCUS_JS = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return "";
  const text = (el.getAttribute("aria-label") || el.textContent || "").trim().slice(0, 40);
  return `${el.tagName.toLowerCase()}${el.id ? "#" + el.id : ""} "${text}"`;
}"""


def tab_stops_without_a_ring(page: Page, limit: int = 120) -> tuple[int, list[str]]:
    """Tab from the top of the page through every stop until the skip link comes round again."""
    page.locator("body").evaluate("b => { document.activeElement?.blur(); window.getSelection()?.removeAllRanges(); }")
    stops, missing = 0, []
    for _ in range(limit):
        page.keyboard.press("Tab")
        where = page.evaluate(_DESCRIBE_FOCUS_JS)
        if stops and "Skip to content" in where:
            return stops, missing
        if not where:
            continue
        stops += 1
        if not page.evaluate(_FOCUS_RING_JS):
            missing.append(where)
    return stops, missing


@pytest.mark.parametrize(
    ("email", "home", "paths"),
    [
        (FARAH, "patient", ["/patient", "/patient/find", "/patient/waitlist/join", "/patient/notifications"]),
        ("dr.chen@harbor.example", "doctor", ["/doctor/availability", "/doctor/waitlist"]),
        ("admin@summit.example", "admin", ["/admin/waitlists", "/admin/policy", "/admin/outbox", "/admin/audit"]),
    ],
    ids=["patient", "doctor", "admin"],
)
def test_every_tab_stop_shows_where_the_focus_is(
    kb_page: Page, app_url: str, email: str, home: str, paths: list[str]
) -> None:
    page = kb_page
    if needs_code(email):
        sign_in(page, app_url, email)  # with the second step's code (tests/e2e/mfa_codes.py)
        expect(page).to_have_url(re.compile(rf"/{home}/?$"))
    else:
        sign_in_by_keyboard(page, app_url, email, home)
    for path in paths:
        page.goto(f"{app_url}{path}")
        expect(page.locator(".rt-Spinner.rt-r-size-3")).to_have_count(0)
        expect(page.get_by_role("main").get_by_role("heading").first).to_be_visible()
        stops, missing = tab_stops_without_a_ring(page)
        assert stops > 5, f"{path}: only {stops} tab stops"
        assert not missing, f"{path}: no visible focus on {missing}"


def test_skip_link_is_the_first_stop_and_moves_focus_into_the_content(kb_page: Page, app_url: str) -> None:
    page = kb_page
    sign_in_by_keyboard(page, app_url, FARAH)
    page.goto(f"{app_url}/patient/appointments")
    expect(page.get_by_role("heading", name="My appointments")).to_be_visible()
    skip = page.get_by_role("link", name="Skip to content")
    # Out of sight until focused, then shown.
    assert (skip.bounding_box() or {"y": -1.0})["y"] < 0
    page.keyboard.press("Tab")
    expect(skip).to_be_focused()
    box = skip.bounding_box()
    assert box is not None and box["y"] >= 0 and box["height"] > 0
    assert page.evaluate(_FOCUS_RING_JS)
    shot(page, "skip-link-focused")
    page.keyboard.press("Enter")
    main = page.get_by_role("main")
    expect(main).to_be_focused()
    # The next stop is inside the content, past the six of the sidebar.
    page.keyboard.press("Tab")
    assert has_focus(main)
    expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Home")).not_to_be_focused()


def test_patient_books_a_time_with_the_keyboard_only(kb_page: Page, app_url: str) -> None:
    page = kb_page
    sign_in_by_keyboard(page, app_url, FARAH)

    tab_to(page, page.get_by_role("navigation", name="Main").get_by_role("link", name="Find care"))
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Find care")).to_be_visible()
    tab_to(page, page.get_by_label("Name"))
    page.keyboard.type("Wei Chen")
    page.keyboard.press("Enter")
    card = page.get_by_role("article", name=re.compile(CHEN))
    expect(card).to_be_visible()
    expect(page.get_by_role("article")).to_have_count(1)
    tab_to(page, card.get_by_role("link", name="See times"))
    page.keyboard.press("Enter")

    expect(page.get_by_role("heading", name=re.compile(rf"^{CHEN}"))).to_be_visible()
    week = page.locator("#week-label")
    next_week = page.get_by_role("button", name="Next week")
    for _ in range(4):
        shown = week.inner_text()
        tab_to(page, next_week)
        page.keyboard.press("Enter")
        expect(week).not_to_have_text(shown)

    slot = page.locator('[data-status="free"]').first
    start = slot.get_attribute("data-start")
    tab_to(page, slot)
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("heading", name="Confirm your appointment")).to_be_visible()
    assert_no_serious_violations(page, "booking dialog")
    shot(page, "booking-dialog")
    # The dialog holds the focus: Tab moves within it to the confirm button.
    tab_to(page, dialog.get_by_role("button", name="Confirm booking"))
    page.keyboard.press("Enter")
    expect(dialog.get_by_text("Appointment confirmed")).to_be_visible()

    assert start is not None
    assert _booked_at(app_url, datetime.fromisoformat(start)), f"no appointment booked at {start}"


def test_patient_joins_a_waitlist_and_accepts_an_offer_with_the_keyboard_only(kb_page: Page, app_url: str) -> None:
    page = kb_page
    sign_in_by_keyboard(page, app_url, FARAH)
    tab_to(page, page.get_by_role("navigation", name="Main").get_by_role("link", name="My waitlist"))
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="My waitlist")).to_be_visible()
    tab_to(page, page.get_by_role("link", name="Join a waitlist"))
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Join a waitlist")).to_be_visible()

    # Each select is named by its visible label (no aria-label saying something else).
    expect(page.get_by_role("combobox", name="Clinic", exact=True)).to_have_id("wl-clinic")
    choose(page, page.locator("#wl-clinic"), "Harbor Downtown")
    choose(page, page.locator("#wl-provider"), f"{CHEN}, PsyD")

    # Sent without a day and with the dates the wrong way round: each message is announced (a live region), it
    # describes its field, and the field is marked invalid.
    week = monday_in(6)
    earliest, latest = page.locator("#wl-earliest"), page.locator("#wl-latest")
    type_date(page, earliest, (week + timedelta(days=6)).isoformat())
    type_date(page, latest, week.isoformat())
    submit = page.get_by_role("button", name="Join waitlist")
    tab_to(page, submit)
    page.keyboard.press("Enter")
    error = page.locator("#err-windows")
    expect(error).to_contain_text("Choose at least one day")
    expect(error).to_have_attribute("aria-live", "assertive")
    expect(page.get_by_role("group", name="Or pick days")).to_have_attribute("aria-describedby", "err-windows")
    expect(page.locator("#err-dates")).to_have_text(re.compile("The latest date must be on or after the earliest"))
    expect(page.locator("#err-dates")).to_have_attribute("aria-live", "assertive")
    for field in (earliest, latest):
        expect(field).to_have_attribute("aria-invalid", "true")
        expect(field).to_have_attribute("aria-describedby", "err-dates")
    expect(page.locator("#wl-reason")).to_have_attribute("aria-invalid", "false")
    shot(page, "join-error")

    # Back up to the day picker (Shift+Tab) and switch Monday on with Space; then the dates, the right way round.
    monday = page.get_by_role("button", name="Monday")
    tab_to(page, monday, back=True)
    page.keyboard.press("Space")
    expect(monday).to_have_attribute("aria-pressed", "true")
    expect(error).to_have_text("")
    type_date(page, earliest, week.isoformat())
    type_date(page, latest, (week + timedelta(days=6)).isoformat())
    soon = page.get_by_role("radio", name="Soon")
    tab_to(page, soon)
    page.keyboard.press("Space")
    expect(soon).to_be_checked()
    tab_to(page, submit)
    page.keyboard.press("Enter")

    expect(page).to_have_url(re.compile(r"/patient/waitlist/?$"))
    entry = page.get_by_role("article", name=CHEN)
    expect(entry).to_be_visible()

    # Dr. Chen offers a Monday time that week; the open page shows it live.
    doctor = api_token(app_url, "dr.chen@harbor.example")
    chen = provider_id(app_url, doctor, CHEN)
    token = api_token(app_url, FARAH)
    (waiting,) = api_get(app_url, token, "/waitlists", provider_id=chen, status="waiting")
    entry_id = waiting["id"]
    slot = free_slots(app_url, doctor, chen, week, days=1)[0]
    invited = httpx.post(
        f"{app_url}/api/v1/waitlists/{entry_id}/invite",
        json={"start": slot["start"]},
        headers={"Authorization": f"Bearer {doctor}"},
        timeout=20,
    )
    assert invited.status_code == 201, invited.text

    offer = entry.get_by_role("region", name="Offer")
    expect(offer).to_be_visible()
    # The countdown: digits hidden from screen readers, its minutes said politely in a live region.
    timer = offer.get_by_role("timer")
    expect(timer).to_have_attribute("aria-label", re.compile(r"^(About \d+ minutes?|More than \d+ hours?) left$"))
    expect(timer.locator('[aria-hidden="true"]')).to_have_text(re.compile(r"^\d+:\d\d(:\d\d)?$"))
    expect(offer.locator('[aria-live="polite"]')).to_have_count(1)
    assert_no_serious_violations(page, "My waitlist with an offer")

    accept = offer.get_by_role("button", name="Accept")
    tab_to(page, accept)
    shot(page, "offer-accept-focused")
    page.keyboard.press("Space")
    expect(page.get_by_role("status").filter(has_text="Booked:").first).to_be_visible()
    expect(entry.get_by_role("region", name="Offer")).to_have_count(0)
    assert _booked_at(app_url, datetime.fromisoformat(slot["start"])), f"the offer's time {slot['start']} is not booked"


def _booked_at(app_url: str, start: datetime) -> bool:
    token = api_token(app_url, FARAH)
    return any(
        a["status"] == "booked" and datetime.fromisoformat(a["start_at"]) == start
        for a in api_get(app_url, token, "/appointments")
    )
