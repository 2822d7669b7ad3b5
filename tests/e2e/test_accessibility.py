"""WCAG 2.1 AA in a real browser: axe-core on every page, for every role, at desktop and phone width.

The pages are found in the source (every `route=` under portal/), so a page added later is scanned too. Each role
signs in once and its page is reused across routes. A critical or serious violation fails the test (each is
printed with its rule, impact and elements); the minor and moderate ones are counted and printed.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from playwright.sync_api import Browser, Page, expect

from backend.notifications.preferences import unsubscribe_token
from tests.conftest import ADMIN_URL, TEST_DB_NAME
from tests.e2e.axe import BLOCKING, Violation, axe_source, scan
from tests.e2e.mfa_codes import next_code
from tests.e2e.test_booking_pages import api_token, provider_id
from tests.e2e.test_portal import sign_in

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
WIDTHS = {"desktop": (1280, 860), "phone": (390, 844)}
LOGINS = {"patient": "emma@harbor.example", "doctor": "dr.rivera@harbor.example", "admin": "admin@harbor.example"}
ROUTE = re.compile(r"""route\s*=\s*f?["']([^"']+)["']""")
# Set A11Y_SCREENSHOTS to a folder to keep a full-page screenshot of every page scanned, at each width.
SHOTS = os.environ.get("A11Y_SCREENSHOTS", "")
# Routes that are not pages of their own: "/" only redirects (to /login or the role's home).
NOT_A_PAGE = {"/"}


def page_routes() -> list[str]:
    """Every route registered in the portal's source (rx.page / add_page), sorted."""
    found: set[str] = set()
    for path in (ROOT / "portal").rglob("*.py"):
        found.update(ROUTE.findall(path.read_text(encoding="utf-8")))
    return sorted(r if r.startswith("/") else f"/{r}" for r in found)


def audience(route: str) -> list[str]:
    """Who opens this page: the role of its section, every signed-in role for /account, else a visitor."""
    first = route.strip("/").split("/", 1)[0]
    if first in LOGINS:
        return [first]
    if first == "account":
        return list(LOGINS)
    return ["public"]


def _sql(query: str, *args: object) -> list[tuple[object, ...]]:
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{TEST_DB_NAME}_e2e"
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query, args).fetchall()  # type: ignore[arg-type]


def concrete(route: str, app_url: str) -> list[str]:
    """The URL(s) to open for a route: dynamic segments get real values (and a broken one where a link can be)."""
    if "[provider_id]" in route:
        token = api_token(app_url, LOGINS["patient"])
        return [route.replace("[provider_id]", provider_id(app_url, token, "Elena Rivera"))]
    if "[unsubscribe_token]" in route:
        ((tenant_id, patient_id),) = _sql("SELECT tenant_id, id FROM patients WHERE email = %s", LOGINS["patient"])
        valid = unsubscribe_token(uuid.UUID(str(tenant_id)), uuid.UUID(str(patient_id)))
        return [route.replace("[unsubscribe_token]", valid), route.replace("[unsubscribe_token]", "not-a-real-link")]
    if "[practice]" in route:
        # A practice that does not take registrations (the default), and an unknown one; the open form and the
        # verification page are scanned by test_self_registration_pages.
        return [route.replace("[practice]", "harbor"), route.replace("[practice]", "not-a-real-link")]
    # Any other dynamic segment (a token in a link): the page for a link that does not work.
    return [re.sub(r"\[[^\]]+\]", "not-a-real-link", route)]


def settle(page: Page) -> None:
    """Wait until the page has loaded its data: no page-sized spinner, and a heading shown."""
    expect(page.locator(".rt-Spinner.rt-r-size-3")).to_have_count(0)
    expect(page.get_by_role("heading").first).to_be_visible()


@pytest.fixture(scope="module")
def axe() -> str:
    return axe_source()


def say(config: pytest.Config, text: str) -> None:
    """Print past pytest's capture: the figures belong in every run's output, not only a failing one's."""
    capture = config.pluginmanager.getplugin("capturemanager")
    if capture is None:
        print(text)
        return
    with capture.global_and_fixture_disabled():
        print(text, flush=True)


@pytest.fixture(scope="module")
def report(pytestconfig: pytest.Config) -> Iterator[dict[str, list[Violation]]]:
    found: dict[str, list[Violation]] = {}
    yield found
    everything = [v for group in found.values() for v in group]
    blocking = [v for v in everything if v.impact in BLOCKING]
    minor = [v for v in everything if v.impact not in BLOCKING]
    say(
        pytestconfig,
        f"\naxe-core (WCAG 2.0/2.1 A and AA), roles {', '.join(found)}: critical/serious "
        f"{sum(len(v.targets) for v in blocking)} elements; minor/moderate {sum(len(v.targets) for v in minor)} "
        f"elements ({len(minor)} rule hits)",
    )
    for v in minor:
        say(pytestconfig, f"  {v}")


@pytest.mark.parametrize("role", ["public", "patient", "doctor", "admin"])
def test_every_page_has_no_serious_or_critical_violations(
    browser: Browser,
    app_url: str,
    axe: str,
    report: dict[str, list[Violation]],
    role: str,
    pytestconfig: pytest.Config,
) -> None:
    routes = [r for r in page_routes() if r not in NOT_A_PAGE and role in audience(r)]
    assert routes, f"no pages for {role}"
    urls = [url for route in routes for url in concrete(route, app_url)]
    context = browser.new_context(
        viewport={"width": WIDTHS["desktop"][0], "height": WIDTHS["desktop"][1]}, bypass_csp=True
    )
    context.set_default_timeout(20_000)
    found: list[Violation] = []
    try:
        page = context.new_page()
        if role != "public":
            email = LOGINS[role]
            if role == "admin":
                # The second sign-in step is a page of its own: scan it on the way in.
                page.goto(f"{app_url}/login")
                page.fill("#email", email)
                page.fill("#password", "demo-pass-2026")
                page.click("button[type=submit]")
                page.wait_for_url(re.compile(r"/login/mfa"))
                settle(page)
                for width, (w, h) in WIDTHS.items():
                    page.set_viewport_size({"width": w, "height": h})
                    found += scan(page, axe, f"/login/mfa ({width})")
                page.set_viewport_size({"width": WIDTHS["desktop"][0], "height": WIDTHS["desktop"][1]})
                page.fill("#code", next_code(email))
                page.click("button[type=submit]")
            else:
                sign_in(page, app_url, email)
            expect(page).to_have_url(re.compile(rf"/{role}/?$"))
        for width, (w, h) in WIDTHS.items():
            page.set_viewport_size({"width": w, "height": h})
            for url in urls:
                page.goto(f"{app_url}{url}")
                settle(page)
                found += scan(page, axe, f"{_short(url)} ({width}, {role})")
                if SHOTS:
                    name = re.sub(r"[^a-z0-9]+", "-", _short(url).lower()).strip("-") or "root"
                    page.screenshot(path=str(Path(SHOTS) / f"{role}-{name}-{width}.png"), full_page=True)
    finally:
        context.close()
    report[role] = found
    blocking = [v for v in found if v.impact in BLOCKING]
    minor = sum(len(v.targets) for v in found if v.impact not in BLOCKING)
    say(
        pytestconfig,
        f"\n{role}: {len(urls)} pages x {len(WIDTHS)} widths: {sum(len(v.targets) for v in blocking)} critical/serious "
        f"elements, {minor} minor/moderate",
    )
    for v in blocking:
        say(pytestconfig, f"  {v}")
    assert not blocking, "\n".join(str(v) for v in blocking)


def test_self_registration_pages(
    browser: Browser, app_url: str, axe: str, report: dict[str, list[Violation]], pytestconfig: pytest.Config
) -> None:
    """The registration form of a practice that takes registrations (with a field error shown) and a working
    verification link's page, at both widths; the practice's registration is off again afterwards."""
    from tests.e2e.test_self_registration import set_registration, verify_link_in_outbox

    token = api_token(app_url, LOGINS["admin"])
    set_registration(app_url, token, True)
    context = browser.new_context(viewport={"width": 1280, "height": 860}, bypass_csp=True)
    context.set_default_timeout(20_000)
    found: list[Violation] = []
    try:
        page = context.new_page()
        name = f"Axe Newcomer {uuid.uuid4().hex[:6]}"
        page.goto(f"{app_url}/register/harbor")
        settle(page)
        page.get_by_label("Full name").fill(name)
        page.get_by_label("Email (you will sign in with it)").fill(f"axe.{uuid.uuid4().hex[:6]}@example.org")
        page.get_by_label("I accept the terms of use and the privacy notice.").check()
        page.get_by_label("Choose a password").fill("Password2026!")
        page.get_by_role("button", name="Create account").click()
        expect(page.locator("#err-register-password")).not_to_be_empty()
        for width, (w, h) in WIDTHS.items():
            page.set_viewport_size({"width": w, "height": h})
            found += scan(page, axe, f"/register/harbor, form with an error ({width}, public)")
        page.get_by_label("Choose a password").fill("juniper lantern orbit 88")
        page.get_by_role("button", name="Create account").click()
        expect(page.get_by_role("heading", name="Check your e-mail")).to_be_visible()
        for width, (w, h) in WIDTHS.items():
            page.set_viewport_size({"width": w, "height": h})
            found += scan(page, axe, f"/register/harbor, sent ({width}, public)")
        page.goto(app_url + verify_link_in_outbox(app_url, token, name))
        settle(page)
        for width, (w, h) in WIDTHS.items():
            page.set_viewport_size({"width": w, "height": h})
            found += scan(page, axe, f"/verify/… ({width}, public)")
    finally:
        context.close()
        set_registration(app_url, api_token(app_url, LOGINS["admin"]), False)
    report["registration"] = found
    blocking = [v for v in found if v.impact in BLOCKING]
    for v in blocking:
        say(pytestconfig, f"  {v}")
    assert not blocking, "\n".join(str(v) for v in blocking)


def _short(url: str) -> str:
    # Tokens and ids make the report hard to read: keep the route's shape.
    return re.sub(r"/[0-9a-fA-F-]{32,}|/[A-Za-z0-9_-]{40,}", "/…", url)


def test_the_scan_finds_every_page_and_a_violation(browser: Browser, axe: str) -> None:
    """The scan itself can fail: an unlabelled input and grey-on-white text are reported as critical/serious."""
    routes = page_routes()
    for expected in ("/login", "/patient", "/patient/waitlist/join", "/doctor/waitlist", "/admin/outbox"):
        assert expected in routes
    context = browser.new_context(bypass_csp=True)
    try:
        page = context.new_page()
        page.set_content(
            "<html lang='en'><head><title>t</title></head><body><main><h1>t</h1>"
            "<input type='text'><p style='color:#aaa;background:#fff'>hard to read</p></main></body></html>"
        )
        rules = {v.rule for v in scan(page, axe, "fixture") if v.impact in BLOCKING}
        assert {"label", "color-contrast"} <= rules, rules
    finally:
        context.close()


def test_a_failed_axe_install_fails_instead_of_skipping(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No axe, no pass: a version npm cannot install raises (the scan's fixture then errors the run)."""
    from tests.e2e import axe as axe_module

    cache = tmp_path / "axe-core-0.0.0-missing"
    monkeypatch.setattr(axe_module, "AXE_VERSION", "0.0.0-missing")
    monkeypatch.setattr(axe_module, "CACHE", cache)
    monkeypatch.setattr(axe_module, "AXE_JS", cache / "node_modules" / "axe-core" / "axe.min.js")
    with pytest.raises(RuntimeError, match=re.escape("could not install axe-core@0.0.0-missing")):
        axe_module.axe_source()
