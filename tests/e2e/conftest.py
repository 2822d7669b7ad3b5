"""End-to-end fixtures: the real app (production build, one port) on its own seeded database, and Chromium."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from tests.conftest import ADMIN_URL, REDIS_URL, TEST_DB_NAME, free_port, grant_test_roles, role_env
from tests.pg_proxy import PgProxy

E2E_TWILIO_TOKEN = "e2e-twilio-auth-token-0123456789"

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# The first production build installs the frontend's npm packages: allow for it.
STARTUP_SECONDS = 900


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            ready = httpx.get(f"{url}/api/ready", timeout=2).status_code == 200
            if ready and "<html" in httpx.get(f"{url}/login", timeout=5, follow_redirects=True).text.lower():
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError(f"the app did not start in {STARTUP_SECONDS}s:\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="session")
def pg_proxy() -> Iterator[PgProxy]:
    """The app reaches PostgreSQL through this proxy, so a test can take the database away and bring it back
    (test_postgres_outage_page.py) without touching the shared server."""
    with PgProxy() as proxy:
        yield proxy


@pytest.fixture(scope="session")
def app_url(tmp_path_factory: pytest.TempPathFactory, pg_proxy: PgProxy) -> Iterator[str]:
    """Serve the app against a fresh, migrated and seeded database; stop it and drop the database after."""
    db_name = f"{TEST_DB_NAME}_e2e"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
    env = {
        **os.environ,
        # As deployed: migrations as the owner, the app as a role under row-level security (and the system role).
        **role_env(db_name),
        "REDIS_URL": REDIS_URL,
        "REFLEX_USE_NPM": "1",
        "REFLEX_CHECK_LATEST_VERSION": "false",
        "REFLEX_TELEMETRY_ENABLED": "false",
        # Console channel as in the embedded default, but Twilio's callbacks can be signed (test_notifications).
        "TWILIO_AUTH_TOKEN": E2E_TWILIO_TOKEN,
        # The login back-off's first wait (2 s by default) could pass before a loaded machine's browser made the
        # sixth attempt (test_portal); a minute keeps that test about the rule, not about the machine's speed.
        "LOGIN_BACKOFF_BASE_SECONDS": "60",
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }
    env.pop("CELERY_BROKER_URL", None)
    python = sys.executable
    subprocess.run([python, "-m", "alembic", "upgrade", "head"], cwd=ROOT, env=env, check=True, capture_output=True)
    grant_test_roles(db_name)
    subprocess.run([python, "-m", "backend.seed", "--demo", "--if-empty"], cwd=ROOT, env=env, check=True)
    port = free_port()
    log = tmp_path_factory.mktemp("app") / "app.log"
    # The app's database (both of its roles): via the proxy.
    app_env = {
        **env,
        "DATABASE_URL": pg_proxy.url_for(env["DATABASE_URL"]),
        "SYSTEM_DATABASE_URL": pg_proxy.url_for(env["SYSTEM_DATABASE_URL"]),
    }
    # Single sign-on (test_sso.py): the local test provider is plain HTTP on 127.0.0.1, and it sends the browser
    # back to this app (PUBLIC_URL stays the default: other tests sign Twilio callbacks with it).
    app_env.update(SSO_ALLOW_HTTP_LOOPBACK="1", SSO_REDIRECT_BASE_URL=f"http://127.0.0.1:{port}")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [python, "-m", "reflex", "run", "--env", "prod", "--single-port",
             "--frontend-port", str(port), "--backend-port", str(port)],
            cwd=ROOT, env=app_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc, log)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture
def context(browser: Browser, request: pytest.FixtureRequest) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 860})
    ctx.set_default_timeout(15_000)
    yield ctx
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        out = ROOT / "test-artifacts"
        out.mkdir(exist_ok=True)
        for i, page in enumerate(ctx.pages):
            page.screenshot(path=str(out / f"{request.node.name}-{i}.png"), full_page=True)
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)
