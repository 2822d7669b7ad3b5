"""Benchmark (not a test): how fast the main pages are in a real browser, against the production build.

    flock /tmp/waitwell-e2e.lock .venv/bin/python -m bench.pages [--clicks 30] [--loads 3]
    .venv/bin/python -m bench.pages --url http://127.0.0.1:3000   # an app already served on the demo data

It creates its own PostgreSQL database (dropped at the end), migrates it, seeds the demo practices
(`backend.seed --demo`), and serves the app as `make run` does (`reflex run --env prod --single-port`: the
production build, one port; the build is why it must run under the e2e lock). Then, in headless Chromium, signed in
as a patient (alice@harbor.example), a doctor (dr.rivera@harbor.example) and an admin (admin@harbor.example, with
a TOTP code), for each main page it measures:
- first load: a new browser context (empty cache) with the session cookie, from navigation start to the page's
  main content visible (the page's data shown, no page-sized spinner): the median and the worst of --loads loads;
- warm navigation: in a new tab of a context whose cache is warm, already on another page, a click on the page's
  link (client-side routing) to its content visible (the new page's heading and data): the median of --loads;
- a state event's round trip, on the pages that have one: from the click to the DOM showing the server's answer
  (provider week: next/previous week; doctor's schedule: next/previous day; waitlist console: the status filter),
  p50 and p95 over --clicks clicks.
Times are taken in the page (performance.now(), a requestAnimationFrame poll: within a frame), and the targets of
issue 13 are printed beside them (first load < 1 s, warm navigation < 300 ms, round trip p95 < 100 ms).
It also prints where the time goes: for a first load, DOMContentLoaded (document and bundles), when the event
socket's handshake started and when the page sent its first event; for each figure, the time the page's Reflex
events spent at the server as the browser saw it (each event frame sent to the next state delta received, from
the DevTools protocol's timestamps: network included); the rest is the browser's (bundles, JavaScript, rendering).
Nothing is asserted: it prints figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pyotp

ROOT = Path(__file__).resolve().parents[1]
ADMIN_URL = os.environ.get("TEST_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/3")
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]  # fmt: skip
STARTUP_SECONDS = 900  # the first production build installs the frontend's npm packages
TARGET_FIRST_MS, TARGET_WARM_MS, TARGET_EVENT_P95_MS = 1000.0, 300.0, 100.0
LOGINS = {"patient": "alice@harbor.example", "doctor": "dr.rivera@harbor.example", "admin": "admin@harbor.example"}


@dataclass
class PageSpec:
    """A main page: who opens it, the link that leads to it, and what shows that its content is there."""

    role: str
    path: str
    link: str  # the navigation link's accessible name (a "See times" card link for the provider's week)
    css: str = ""  # an element of the content, inside #main-content
    text: str = ""  # or a text the content shows
    from_path: str = ""  # warm navigation starts here (default: the role's home, or find for the provider's week)
    login: str = ""  # who opens it, if not the role's usual login (LOGINS)


PAGES = [
    PageSpec("patient", "/patient", "Home", text="Rivera"),
    PageSpec("patient", "/patient/find", "Find care", css="[role=article]"),
    PageSpec("patient", "/patient/provider/{rivera}", "See times", css="[data-status]", from_path="/patient/find"),
    PageSpec("patient", "/patient/appointments", "My appointments", css="[role=region] [role=article]"),
    # Alice waits on no list: David (English pages) waits for the first free provider.
    PageSpec("patient", "/patient/waitlist", "My waitlist", css="[role=article]", login="david@harbor.example"),
    PageSpec("doctor", "/doctor", "Today", css="table tbody tr"),
    PageSpec("doctor", "/doctor/schedule", "Schedule", css="[role=list] [role=listitem], [role=list] li, .rt-Card"),
    PageSpec("doctor", "/doctor/waitlist", "Waitlist", css="[role=list] [role=listitem]"),
    PageSpec("admin", "/admin", "Overview", css=".rt-Card"),
    PageSpec("admin", "/admin/policy", "Policy", css="#policy-scope"),
    PageSpec("admin", "/admin/people", "People", css="#people-list *"),
    PageSpec("admin", "/admin/insights", "Insights", css="table tbody tr"),
    PageSpec("admin", "/admin/audit", "Audit", css="table tbody tr"),
]

# Warm navigation to a role's home starts on this page (to any other page: on the home).
HOME_FROM = {"patient": "/patient/appointments", "doctor": "/doctor/schedule", "admin": "/admin/policy"}

# The content check, run in the page on every animation frame: the time (ms since navigation start) once the
# content is there, else false.
READY_JS = """(spec) => {
  const main = document.getElementById('main-content');
  if (!main || document.querySelector('.rt-Spinner.rt-r-size-3')) return false;
  if (spec.css) {
    const el = main.querySelector(spec.css);
    if (!el || !(el.offsetWidth || el.offsetHeight || el.getClientRects().length)) return false;
  }
  if (spec.text && !main.innerText.includes(spec.text)) return false;
  if (spec.notPath && location.pathname === spec.notPath) return false;
  // After a client-side navigation the old page's DOM can linger a moment: the new page's heading must show.
  const heading = main.querySelector('h1, h2');
  if (spec.notHeading && (!heading || heading.textContent === spec.notHeading)) return false;
  return performance.now();
}"""

# Record when the next pointer/click starts (capture phase, before any handler), and watch a node's text change.
ARM_JS = """(watch) => {
  const rt = window.__bench = {start: null, end: null, before: null, watch};
  const node = () => (watch ? document.querySelector(watch) : null);
  rt.before = node() ? node().textContent : null;
  const mark = () => { if (rt.start === null) rt.start = performance.now(); };
  for (const type of ['pointerdown', 'mousedown', 'click']) document.addEventListener(type, mark, {capture: true, once: true});
  if (watch) {
    const obs = new MutationObserver(() => {
      const n = node();
      if (rt.start !== null && rt.end === null && n && n.textContent !== rt.before) { rt.end = performance.now(); obs.disconnect(); }
    });
    obs.observe(document.body, {subtree: true, childList: true, characterData: true, attributes: true});
  }
}"""

class WsClock:
    """The page's Reflex events, timed by the browser (Chrome DevTools Protocol timestamps): each event frame sent
    to the first state delta received after it. Socket.IO's pings and pongs are not events and are left out."""

    def __init__(self, ctx: Any, tab: Any) -> None:
        self.sent: list[float] = []
        self.rtts: list[float] = []
        self.wall_offset: float | None = None  # wall clock minus the protocol's monotonic clock, in seconds
        self.opened_wall: float | None = None  # when the socket's handshake started (epoch seconds)
        self.first_event_wall: float | None = None  # when the page sent its first event
        cdp = ctx.new_cdp_session(tab)
        cdp.send("Network.enable")
        cdp.on("Network.webSocketWillSendHandshakeRequest", self._opened)
        cdp.on("Network.webSocketFrameSent", self._sent)
        cdp.on("Network.webSocketFrameReceived", self._received)

    def _opened(self, params: dict[str, Any]) -> None:
        if self.opened_wall is None:
            self.opened_wall = float(params["wallTime"])
            self.wall_offset = float(params["wallTime"]) - float(params["timestamp"])

    def _sent(self, params: dict[str, Any]) -> None:
        if str(params.get("response", {}).get("payloadData", "")).startswith("42"):
            self.sent.append(float(params["timestamp"]))
            if self.first_event_wall is None and self.wall_offset is not None:
                self.first_event_wall = float(params["timestamp"]) + self.wall_offset

    def since_navigation(self, tab: Any) -> tuple[float | None, float | None]:
        """(socket opened, first event sent), in ms since the page's navigation start."""
        origin = float(tab.evaluate("() => performance.timeOrigin")) / 1000
        return tuple(None if t is None else (t - origin) * 1000 for t in (self.opened_wall, self.first_event_wall))  # type: ignore[return-value]

    def _received(self, params: dict[str, Any]) -> None:
        if self.sent and str(params.get("response", {}).get("payloadData", "")).startswith("42"):
            self.rtts.append((float(params["timestamp"]) - self.sent.pop(0)) * 1000)

    def take(self) -> list[float]:
        out, self.rtts, self.sent = self.rtts, [], []
        return out


@dataclass
class Figures:
    first: list[float] = field(default_factory=list)
    first_server: list[float] = field(default_factory=list)  # websocket round trips during the first load
    first_dom: list[float] = field(default_factory=list)  # DOMContentLoaded (document and bundles) of the first load
    first_socket: list[float] = field(default_factory=list)  # the event socket's handshake started
    first_event: list[float] = field(default_factory=list)  # the page's first event sent
    warm: list[float] = field(default_factory=list)
    warm_server: list[float] = field(default_factory=list)
    events: list[float] = field(default_factory=list)
    event_server: list[float] = field(default_factory=list)
    event_name: str = ""
    notes: list[str] = field(default_factory=list)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- the app ----------------------------------------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def served_app(workdir: Path) -> Iterator[str]:
    """A fresh database with the demo practices, and the production app on it; both gone afterwards."""
    from bench._roles import create_roles, drop_roles

    db_name = f"benchpages_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
    db_url = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + f"/{db_name}"
    roles: dict[str, str] = {}
    proc = None
    try:
        env = {**os.environ, "DATABASE_URL": db_url, "REDIS_URL": REDIS_URL, "REDIS_KEY_PREFIX": f"bench-{db_name}",
               "SECRET_KEY": secrets.token_urlsafe(48), "REFLEX_USE_NPM": "1", "REFLEX_CHECK_LATEST_VERSION": "false",
               "REFLEX_TELEMETRY_ENABLED": "false", "PYTHONDONTWRITEBYTECODE": "1",
               "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}  # fmt: skip
        for key in ("CELERY_BROKER_URL", "REFLEX_REDIS_URL", "SYSTEM_DATABASE_URL", "DATABASE_OWNER_URL"):
            env.pop(key, None)
        subprocess.run([sys.executable, "-m", "alembic", "upgrade", "head"], cwd=ROOT, env=env, check=True,
                       capture_output=True)  # fmt: skip
        roles = create_roles(db_url)
        env.update(roles)
        subprocess.run([sys.executable, "-m", "backend.seed", "--demo", "--if-empty"], cwd=ROOT, env=env, check=True,
                       capture_output=True)  # fmt: skip
        port = _free_port()
        log = workdir / "app.log"
        started = time.monotonic()
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "reflex", "run", "--env", "prod", "--single-port", "--frontend-port", str(port),
                 "--backend-port", str(port), "--loglevel", "warning"],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the app exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if (httpx.get(f"{url}/api/ready", timeout=2).status_code == 200
                        and "<html" in httpx.get(f"{url}/login", timeout=5, follow_redirects=True).text.lower()):  # fmt: skip
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the app did not start:\n{log.read_text()[-4000:]}")
            time.sleep(1)
        progress(f"app built and served in {time.monotonic() - started:.0f} s at {url}")
        yield url
    finally:
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        from bench._keys import forget_keys

        forget_keys(REDIS_URL, f"bench-{db_name}")
        if roles:
            drop_roles(ADMIN_URL, roles)


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the browser ------------------------------------------------------------------------------------------------


def sign_in(browser: Any, url: str, role: str, email: str) -> dict[str, Any]:
    """Sign `email` (a `role`) in through the login form; return the context's storage state (its session
    cookie)."""
    from backend.seed import DEMO_ADMIN_TOTP_SECRET, DEMO_PASSWORD

    ctx = browser.new_context(viewport={"width": 1280, "height": 860})
    page = ctx.new_page()
    page.goto(f"{url}/login")
    page.fill("#email", email)
    page.fill("#password", DEMO_PASSWORD)
    page.click("button[type=submit]")
    if role == "admin":
        page.wait_for_url(re.compile(r"/login/mfa"))
        page.fill("#code", pyotp.TOTP(DEMO_ADMIN_TOTP_SECRET).now())
        page.click("button[type=submit]")
    page.wait_for_url(re.compile(rf"/{role}/?$"), timeout=30_000)
    state = ctx.storage_state()
    ctx.close()
    return state


def _spec(page: PageSpec, not_path: str = "", not_heading: str = "") -> dict[str, str]:
    return {"css": page.css, "text": page.text, "notPath": not_path, "notHeading": not_heading}


def wait_ready(tab: Any, spec: dict[str, str], timeout: float = 30_000) -> float:
    return float(tab.wait_for_function(READY_JS, arg=spec, polling="raf", timeout=timeout).json_value())


DOM_READY_JS = "() => performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd"


def measure_page(browser: Any, url: str, state: dict[str, Any], spec: PageSpec, path: str, args: argparse.Namespace,
                 shots: Path | None) -> Figures:  # fmt: skip
    figures = Figures()
    shot = f"{spec.role}{spec.path.split('/{')[0].replace('/', '_')}"
    # First load: a new context each time (nothing cached), signed in by its cookie.
    for i in range(args.loads):
        ctx = browser.new_context(viewport={"width": 1280, "height": 860}, storage_state=state)
        tab = ctx.new_page()
        clock = WsClock(ctx, tab)
        tab.goto(f"{url}{path}", wait_until="commit")
        try:
            figures.first.append(wait_ready(tab, _spec(spec)))
            figures.first_dom.append(float(tab.evaluate(DOM_READY_JS)))
            opened, first_event = clock.since_navigation(tab)
            if opened is not None and first_event is not None:
                figures.first_socket.append(opened)
                figures.first_event.append(first_event)
            figures.first_server.append(sum(clock.take()))
            if shots is not None and i == 0:
                tab.screenshot(path=str(shots / f"{shot}.png"))
        except Exception as exc:  # noqa: BLE001 - a page that never shows its content is a figure, not a crash
            figures.notes.append(f"first load {i + 1}: content not seen ({type(exc).__name__})")
            if shots is not None:
                tab.screenshot(path=str(shots / f"{shot}-failed.png"))
        ctx.close()
    # Warm navigation: a tab already on another page of the app follows the page's link.
    # Each in a new tab of one context: the browser's cache is warm, the page's state (per tab) is not.
    ctx = browser.new_context(viewport={"width": 1280, "height": 860}, storage_state=state)
    start_path = spec.from_path or (HOME_FROM[spec.role] if spec.path == f"/{spec.role}" else f"/{spec.role}")
    start_spec = next((p for p in PAGES if p.path == start_path), None)
    tab = None
    for _ in range(args.loads):
        if tab is not None:
            tab.close()
        tab = ctx.new_page()
        clock = WsClock(ctx, tab)
        tab.goto(f"{url}{start_path}")
        if start_spec is not None:
            wait_ready(tab, _spec(start_spec))
        else:
            tab.wait_for_load_state("networkidle")
        tab.wait_for_timeout(300)  # let the start page settle
        if spec.link == "See times":
            link = tab.get_by_role("article", name=re.compile("Rivera")).get_by_role("link", name="See times")
        else:
            link = tab.get_by_role("navigation").get_by_role("link", name=spec.link, exact=True).first
        try:
            heading = tab.evaluate("() => document.querySelector('#main-content').querySelector('h1, h2').textContent")
            tab.evaluate(ARM_JS, "")
            clock.take()
            link.click()
            end = wait_ready(tab, _spec(spec, not_path=start_path, not_heading=heading))
            start = tab.evaluate("() => window.__bench.start")
            figures.warm.append(end - start)
            figures.warm_server.append(sum(clock.take()))
        except Exception as exc:  # noqa: BLE001
            figures.notes.append(f"warm navigation: content not seen ({type(exc).__name__})")
    # A state event's round trip, where the page has one.
    event = EVENTS.get(spec.path.split("/{")[0])
    if event is not None:
        figures.event_name = event[0]
        try:
            event[1](tab, clock, url, path, spec, figures, args.clicks)
        except Exception as exc:  # noqa: BLE001
            figures.notes.append(f"round trip: stopped after {len(figures.events)} clicks ({type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0][:120]})")  # fmt: skip
    ctx.close()
    return figures


def _round_trip(tab: Any, clock: WsClock, watch: str, click: Any, timeout_ms: float = 10_000) -> tuple[float, float]:
    tab.evaluate(ARM_JS, watch)
    clock.take()
    click()
    tab.wait_for_function("() => window.__bench.end !== null", polling="raf", timeout=timeout_ms)
    rt = tab.evaluate("() => window.__bench")
    return rt["end"] - rt["start"], sum(clock.take())


def _open(tab: Any, url: str, path: str, spec: PageSpec) -> None:
    tab.goto(f"{url}{path}")
    wait_ready(tab, _spec(spec))
    tab.wait_for_timeout(500)


def _weeks(tab: Any, clock: WsClock, url: str, path: str, spec: PageSpec, figures: Figures, clicks: int) -> None:
    _open(tab, url, path, spec)
    for i in range(clicks):
        name = "Next week" if i % 2 == 0 else "Previous week"
        ms, server = _round_trip(tab, clock, "#week-label", lambda n=name: tab.get_by_role("button", name=n).click())
        figures.events.append(ms)
        figures.event_server.append(server)


def _days(tab: Any, clock: WsClock, url: str, path: str, spec: PageSpec, figures: Figures, clicks: int) -> None:
    _open(tab, url, path, spec)
    main = tab.locator("#main-content")
    for i in range(clicks):
        name = re.compile(r"^Next" if i % 2 == 0 else r"^Previous")
        button = main.get_by_role("button", name=name).first
        ms, server = _round_trip(tab, clock, "#main-content", button.click)
        figures.events.append(ms)
        figures.event_server.append(server)


def _status_filter(trigger: str) -> Any:
    def run(tab: Any, clock: WsClock, url: str, path: str, spec: PageSpec, figures: Figures, clicks: int) -> None:
        _open(tab, url, path, spec)
        names = [o.strip() for o in _options(tab, trigger)]
        if len(names) < 2:
            raise RuntimeError(f"the {trigger} filter has {len(names)} options")
        for i in range(clicks):
            current = tab.locator(f"#{trigger}").inner_text().strip()
            choice = next(n for n in names[i % len(names):] + names if n != current)
            tab.locator(f"#{trigger}").click()
            option = tab.get_by_role("option", name=choice, exact=True)
            option.wait_for()
            ms, server = _round_trip(tab, clock, f"#{trigger}", option.click)
            figures.events.append(ms)
            figures.event_server.append(server)
            tab.wait_for_timeout(100)

    return run


def _options(tab: Any, trigger: str) -> list[str]:
    tab.locator(f"#{trigger}").click()
    tab.get_by_role("option").first.wait_for()
    names = [o.inner_text() for o in tab.get_by_role("option").all()]
    tab.keyboard.press("Escape")
    tab.wait_for_timeout(200)
    return names


EVENTS: dict[str, tuple[str, Any]] = {
    "/patient/provider": ("next/previous week", _weeks),
    "/doctor/schedule": ("next/previous day", _days),
    "/doctor/waitlist": ("status filter", _status_filter("console-status")),
}


def provider_id(url: str, name: str) -> str:
    """The id of the provider called `name` (through the API, as the demo patient)."""
    from backend.seed import DEMO_PASSWORD

    token = httpx.post(f"{url}/api/v1/auth/token", json={"email": LOGINS["patient"], "password": DEMO_PASSWORD},
                       timeout=30).json()["access_token"]  # fmt: skip
    cards = httpx.get(f"{url}/api/v1/providers", params={"q": name}, headers={"Authorization": f"Bearer {token}"},
                      timeout=30).json()  # fmt: skip
    return str(cards[0]["id"])


def _ms(values: list[float], q: float | None = 0.5) -> str:
    if not values:
        return "-"
    return f"{(max(values) if q is None else statistics.median(values) if q == 0.5 else _pct(values, q)):.0f}"


def _flag(value: float | None, target: float) -> str:
    return "" if value is None else (" ok" if value < target else " MISS")


def print_table(rows: list[tuple[PageSpec, Figures]], header: str) -> None:
    print(f"# {header}")
    print(f"{'page':<28} {'first load ms':>19} {'warm nav ms':>12} {'state event':<20} {'p50 ms':>7} {'p95 ms':>8}"
          f"   targets: first < {TARGET_FIRST_MS:.0f}, warm < {TARGET_WARM_MS:.0f}, event p95 < "
          f"{TARGET_EVENT_P95_MS:.0f}")  # fmt: skip
    print(f"{'':<28} {'median / max':>19}")
    for spec, f in rows:
        first = f"{_ms(f.first)} / {_ms(f.first, None)}" + _flag(max(f.first) if f.first else None, TARGET_FIRST_MS)
        warm = _ms(f.warm) + _flag(statistics.median(f.warm) if f.warm else None, TARGET_WARM_MS)
        p95 = _ms(f.events, 0.95) + _flag(_pct(f.events, 0.95) if f.events else None, TARGET_EVENT_P95_MS)
        print(f"{spec.role + ' ' + spec.path.replace('{rivera}', '<id>'):<28} {first:>19} {warm:>12} "
              f"{f.event_name or '-':<20} {_ms(f.events):>7} {p95:>8}")  # fmt: skip
    print()
    print("where the time goes (median; 'ws' = the page's Reflex events, sent to answer received, as the browser saw "
          "them: the server's part, network included; the rest is the browser's: bundles, rendering, JavaScript):")  # fmt: skip
    for spec, f in rows:
        parts = []
        if f.first:
            parts.append(f"first load {_ms(f.first)} ms (DOMContentLoaded {_ms(f.first_dom)}, socket opened "
                         f"{_ms(f.first_socket)}, first event sent {_ms(f.first_event)}, ws {_ms(f.first_server)} ms)")
        if f.warm:
            parts.append(f"warm {_ms(f.warm)} ms, ws {_ms(f.warm_server)} ms")
        if f.events:
            parts.append(f"event {_ms(f.events)} ms, ws {_ms(f.event_server)} ms (p95 {_ms(f.event_server, 0.95)})")
        print(f"  {spec.role + ' ' + spec.path.replace('{rivera}', '<id>'):<28} " + "; ".join(parts))
        for note in f.notes:
            print(f"  {'':<28} note: {note}")


def run(url: str, args: argparse.Namespace) -> list[tuple[PageSpec, Figures]]:
    from playwright.sync_api import sync_playwright

    shots = args.shots
    if shots is not None:
        shots.mkdir(parents=True, exist_ok=True)
    rivera = provider_id(url, "Rivera")
    rows = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        states: dict[str, dict[str, Any]] = {}
        for spec in PAGES:
            if args.only and not any(o in spec.path for o in args.only.split(",")):
                continue
            path = spec.path.replace("{rivera}", rivera)
            progress(f"{spec.role} {path}")
            email = spec.login or LOGINS[spec.role]
            if email not in states:
                states[email] = sign_in(browser, url, spec.role, email)
            rows.append((spec, measure_page(browser, url, states[email], spec, path, args, shots)))
        browser.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="bench an app already served (on the demo data) instead of serving one")
    parser.add_argument("--loads", type=int, default=3, help="first loads and warm navigations per page")
    parser.add_argument("--clicks", type=int, default=30, help="state events per page that has one")
    parser.add_argument("--only", help="comma-separated parts of paths: bench only those pages")
    parser.add_argument("--shots", type=Path, help="save a screenshot of each page at its first load here")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    load_before = os.getloadavg()[0]
    workdir = Path(tempfile.mkdtemp(prefix="bench-pages-"))
    try:
        if args.url:
            rows = run(args.url.rstrip("/"), args)
        else:
            with served_app(workdir) as url:
                rows = run(url, args)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    header = (f"{os.cpu_count()} cores; {'the app at ' + args.url if args.url else 'reflex run --env prod --single-port'}"
              f" on the demo data; headless Chromium 1280x860; {args.loads} loads per page, {args.clicks} clicks per "
              f"state event; load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")  # fmt: skip
    print_table(rows, header)
    if args.json is not None:
        args.json.write_text(json.dumps([{"role": s.role, "path": s.path, **f.__dict__} for s, f in rows], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
