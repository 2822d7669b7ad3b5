"""Phones (issue 12, part 3): at 390 px wide no page runs off the right edge, and every action and status of the
table pages is on screen (tables become stacked cards, or scroll inside their own box with a visible cue).

With SHOTS_DIR set, every page visited is also saved as a full-page screenshot there (to look at them).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.test_portal import sign_in

PHONE = {"width": 390, "height": 844}
SHOTS = os.environ.get("SHOTS_DIR", "")

# Every element that must be on screen, and where a page's content overflows (the JS returns what is off).
MEASURE = """() => {
  const width = window.innerWidth;
  const off = [];
  const seen = (el) => {
    const r = el.getBoundingClientRect();
    const style = getComputedStyle(el);
    return r.width > 0 && r.height > 0 && style.visibility !== "hidden" && style.display !== "none";
  };
  const selector = "main button, main a, main [role=status], main .rt-Badge, main input, main select, main textarea";
  for (const el of document.querySelectorAll(selector)) {
    // Not shown to anyone: Radix's hidden native inputs behind its switches and checkboxes.
    if (!seen(el) || el.closest("[aria-hidden=true]") || getComputedStyle(el).opacity === "0") continue;
    const r = el.getBoundingClientRect();
    if (r.right > width + 1 || r.left < -1) {
      off.push(`${el.tagName.toLowerCase()} "${(el.innerText || el.getAttribute("aria-label") || "").trim()
        .slice(0, 40)}" at ${Math.round(r.left)}..${Math.round(r.right)}`);
    }
  }
  // A table laid out as cards must really show its rows (a collapsed scroll box would hide every one of them).
  const rows = [...document.querySelectorAll("main .stack-on-phone tbody tr")];
  const shown = rows.filter((tr) => tr.getBoundingClientRect().height > 0 && tr.getBoundingClientRect().width > 0);
  // ...and each of its lines holds its content (no text spilling over the next line).
  const spilled = [...document.querySelectorAll("main .stack-on-phone tbody tr > *")]
    .filter((c) => c.getBoundingClientRect().height > 0 && c.scrollHeight > c.clientHeight + 1)
    .map((c) => `${c.getAttribute("data-label") || "title"}: ${c.innerText.trim().slice(0, 30)}`);
  return {width, scrollWidth: document.documentElement.scrollWidth, off, rows: rows.length, shown: shown.length,
          spilled};
}"""

PAGES: dict[str, tuple[str, list[str]]] = {
    "patient": (
        "alice@harbor.example",
        ["/patient", "/patient/find", "/patient/appointments", "/patient/waitlist", "/patient/waitlist/join",
         "/patient/notifications", "/terms"],
    ),
    "doctor": (
        "dr.rivera@harbor.example",
        ["/doctor", "/doctor/schedule", "/doctor/availability", "/doctor/waitlist"],
    ),
    "admin": (
        "admin@harbor.example",
        ["/admin", "/admin/clinics", "/admin/waitlists", "/admin/policy", "/admin/outbox", "/admin/audit",
         "/admin/texts", "/admin/insights"],
    ),
}  # fmt: skip
# The pages with tables or long lists of actions: each must fit the phone exactly.
TABLE_PAGES = {
    "/patient/appointments",
    "/doctor",
    "/doctor/schedule",
    "/doctor/waitlist",
    "/doctor/availability",
    "/admin",
    "/admin/clinics",
    "/admin/waitlists",
    "/admin/outbox",
    "/admin/audit",
    "/admin/insights",
}


def _settled(page: Page) -> None:
    """The page's content is there: its main region is shown and nothing in it is still loading."""
    expect(page.locator("main").first).to_be_visible()
    expect(page.locator("main h1, main h2").first).to_be_visible()
    expect(page.locator("main .rt-Spinner")).to_have_count(0)


def _shot(page: Page, role: str, path: str) -> None:
    if SHOTS:
        name = f"{role}{re.sub(r'[^a-z0-9]+', '-', path.lower()).rstrip('-')}.png"
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / name), full_page=True)


def _measure(page: Page) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate(MEASURE)
    return result


@pytest.mark.parametrize("role", list(PAGES))
def test_every_page_fits_a_phone_and_keeps_its_actions_on_screen(browser: Browser, app_url: str, role: str) -> None:
    email, paths = PAGES[role]
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    context.set_default_timeout(15_000)
    try:
        page = context.new_page()
        sign_in(page, app_url, email)
        expect(page).to_have_url(re.compile(rf"/{role}/?$"))
        problems: list[str] = []
        for path in paths:
            page.goto(f"{app_url}{path}")
            _settled(page)
            _shot(page, role, path)
            found = _measure(page)
            if found["scrollWidth"] > found["width"]:
                problems.append(f"{path}: the page is {found['scrollWidth']} px wide on a {found['width']} px phone")
            if path in TABLE_PAGES and found["off"]:
                problems.append(f"{path}: off screen: {found['off'][:6]}")
            if found["spilled"]:
                problems.append(f"{path}: content spills out of its line: {found['spilled'][:4]}")
            if found["shown"] != found["rows"]:
                problems.append(f"{path}: {found['rows'] - found['shown']} of {found['rows']} table rows not shown")
        assert not problems, "\n".join(problems)
    finally:
        context.close()


def test_a_provider_week_fits_a_phone(browser: Browser, app_url: str) -> None:
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        sign_in(page, app_url, "erin@summit.example")
        page.goto(f"{app_url}/patient/find")
        page.get_by_role("link", name="See times").first.click()
        expect(page).to_have_url(re.compile(r"/patient/provider/"))
        _settled(page)
        _shot(page, "patient", "/patient/provider")
        found = _measure(page)
        assert found["scrollWidth"] <= found["width"], found
    finally:
        context.close()
