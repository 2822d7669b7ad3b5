"""Two Reflex backends behind a real nginx (issue 14, item 6): a change made through one backend shows live on a page
whose socket the other backend serves.

As deployed on several machines (README, "Deploying on several machines"): the frontend is exported once as static
files (`reflex export --frontend-only`) that nginx serves with the shipped locations (ops/nginx/locations.conf and
headers.conf, the CSP from ops/nginx/render_csp.py); two `reflex run --env prod --backend-only` processes share one
PostgreSQL database and keep the pages' state in Redis (REFLEX_REDIS_URL). nginx listens on three ports: one
balances across both backends, the other two are pinned to backend 1 and backend 2. The frontend is built with its
socket URL on the port pinned to backend 2, so every page's socket is served by backend 2; the bookings go through
the port pinned to backend 1, and nginx's access log (which names the upstream of each request) shows both.

The build lives in this module's own REFLEX_WEB_WORKDIR, never in the shared .web of the other e2e tests.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
from playwright.sync_api import Browser, expect

from tests.conftest import ADMIN_URL, REDIS_URL, TEST_DB_NAME, free_port, grant_test_roles, role_env
from tests.e2e.conftest import ROOT, STARTUP_SECONDS
from tests.e2e.test_booking_pages import api_get, api_token, provider_id
from tests.e2e.test_live_pages import (
    DAVID,
    DOCTOR,
    JORDAN,
    _afternoon,
    _api,
    _busy,
    _context,
    _grid_slot,
    _local,
    _open_grid,
    _signed_in,
)

pytestmark = pytest.mark.e2e

NGINX_DIR = ROOT / "ops" / "nginx"
# Each request's server port, method, path and the backend nginx sent it to.
LOG_FORMAT = "log_format waitwell_upstreams '$server_port $request_method $uri $upstream_addr';"


@dataclass(frozen=True)
class Deployment:
    balanced: str  # nginx, both backends
    via_1: str  # nginx, backend 1 only
    via_2: str  # nginx, backend 2 only (the frontend's socket URL)
    backends: tuple[str, str]  # host:port of backend 1 and 2
    access_log: Path


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _wait_ready(base: str, procs: dict[str, tuple[subprocess.Popen[bytes], Path]]) -> None:
    """Until `base` (through nginx) answers /api/ready from a backend and /login from the static build."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        for name, (proc, log) in procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if (
                httpx.get(f"{base}/api/ready", timeout=2).status_code == 200
                and "<html" in httpx.get(f"{base}/login", timeout=5).text.lower()
            ):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    logs = "\n".join(f"--- {name}\n{log.read_text()[-2000:]}" for name, (_, log) in procs.items())
    raise RuntimeError(f"{base} did not become ready in {STARTUP_SECONDS}s:\n{logs}")


def _nginx_conf(tmp: Path, build: Path, backends: tuple[int, int], ports: tuple[int, int, int]) -> Path:
    """nginx.conf for the test: the shipped locations and headers, three plain-HTTP servers on 127.0.0.1."""
    conf_dir = tmp / "nginx"
    (conf_dir / "waitwell").mkdir(parents=True)
    for name in ("locations.conf", "headers.conf"):
        shutil.copy(NGINX_DIR / name, conf_dir / "waitwell" / name)
    csp = subprocess.run(
        [sys.executable, str(NGINX_DIR / "render_csp.py"), str(build)], check=True, capture_output=True, text=True
    ).stdout
    (conf_dir / "waitwell" / "csp.conf").write_text(csp)
    b1, b2 = backends
    balanced, via_1, via_2 = ports
    servers = "\n".join(
        f"  server {{ listen 127.0.0.1:{port}; root {build}; set $waitwell_upstream {upstream};"
        " include waitwell/locations.conf; }"
        for port, upstream in ((balanced, "waitwell_web"), (via_1, "waitwell_web_1"), (via_2, "waitwell_web_2"))
    )
    kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    temp = "\n".join(f"  {kind}_temp_path {tmp / kind};" for kind in kinds)
    shipped = (NGINX_DIR / "waitwell.conf").read_text()
    connection_map = re.search(r"^map \$http_upgrade .*?^\}", shipped, re.MULTILINE | re.DOTALL)
    assert connection_map is not None
    conf = conf_dir / "nginx.conf"
    conf.write_text(
        ("user root;\n" if os.geteuid() == 0 else "")  # the workers read this run's private temporary directory
        + f"pid {tmp / 'nginx.pid'};\nerror_log {tmp / 'nginx-error.log'};\nevents {{}}\nhttp {{\n"
        f"  include /etc/nginx/mime.types;\n  {LOG_FORMAT}\n  access_log {tmp / 'access.log'} waitwell_upstreams;\n"
        f"{temp}\n  server_tokens off;\n{connection_map.group(0)}\n"
        f"  upstream waitwell_web {{ least_conn; server 127.0.0.1:{b1}; server 127.0.0.1:{b2}; keepalive 8; }}\n"
        f"  upstream waitwell_web_1 {{ server 127.0.0.1:{b1}; keepalive 4; }}\n"
        f"  upstream waitwell_web_2 {{ server 127.0.0.1:{b2}; keepalive 4; }}\n"
        f"{servers}\n}}\n"
    )
    return conf


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(nginx).exists(), "nginx is not installed: `make chromium` installs it with Chromium"
    tmp = tmp_path_factory.mktemp("two_backends")
    db_name = f"{TEST_DB_NAME}_e2e2b"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
    backends = (free_port(), free_port())
    ports = (free_port(), free_port(), free_port())
    env = {
        **os.environ,
        **role_env(db_name),
        "REDIS_URL": REDIS_URL,
        # What makes any backend able to serve any socket: the pages' state in Redis (rxconfig.py).
        "REFLEX_REDIS_URL": REDIS_URL,
        "REDIS_KEY_PREFIX": f"e2e2b-{secrets.token_hex(4)}",
        "REFLEX_USE_NPM": "1",
        "REFLEX_CHECK_LATEST_VERSION": "false",
        "REFLEX_TELEMETRY_ENABLED": "false",
        "REFLEX_WEB_WORKDIR": str(tmp / "web"),
        # nginx on this machine: its X-Forwarded-* are believed, as TRUSTED_PROXIES names nginx in production.
        "TRUSTED_PROXIES": "127.0.0.1",
        "LOGIN_BACKOFF_BASE_SECONDS": "60",
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }
    env.pop("CELERY_BROKER_URL", None)
    python = sys.executable
    procs: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
    try:
        subprocess.run([python, "-m", "alembic", "upgrade", "head"], cwd=ROOT, env=env, check=True, capture_output=True)
        grant_test_roles(db_name)
        subprocess.run([python, "-m", "backend.seed", "--demo", "--if-empty"], cwd=ROOT, env=env, check=True)
        # The frontend, built once as for a release; its socket URL is nginx's port pinned to backend 2.
        build_log = tmp / "export.log"
        with build_log.open("wb") as out:
            built = subprocess.run(
                [python, "-m", "reflex", "export", "--frontend-only", "--no-zip", "--loglevel", "info"],
                cwd=ROOT, env={**env, "REFLEX_API_URL": f"http://localhost:{ports[2]}"}, stdout=out,
                stderr=subprocess.STDOUT, timeout=STARTUP_SECONDS,
            )  # fmt: skip
        assert built.returncode == 0, build_log.read_text()[-4000:]
        build = tmp / "web" / "build" / "client"
        for n, port in enumerate(backends, start=1):
            args = [python, "-m", "reflex", "run", "--env", "prod", "--backend-only",
                    "--backend-host", "127.0.0.1", "--backend-port", str(port), "--loglevel", "warning"]  # fmt: skip
            procs[f"backend {n}"] = (_start(args, env, tmp / f"backend{n}.log"), tmp / f"backend{n}.log")
        conf = _nginx_conf(tmp, build, backends, ports)
        checked = subprocess.run([nginx, "-t", "-p", str(tmp), "-c", str(conf)], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr
        nginx_args = [nginx, "-p", str(tmp), "-c", str(conf), "-g", "daemon off;"]
        procs["nginx"] = (_start(nginx_args, env, tmp / "nginx.out"), tmp / "nginx.out")
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        for url in urls:
            _wait_ready(url, procs)
        yield Deployment(
            balanced=urls[0],
            via_1=urls[1],
            via_2=urls[2],
            backends=(f"127.0.0.1:{backends[0]}", f"127.0.0.1:{backends[1]}"),
            access_log=tmp / "access.log",
        )
    finally:
        for proc, _ in procs.values():
            _stop(proc)
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')


def _log_lines(deployment: Deployment) -> list[str]:
    return deployment.access_log.read_text().splitlines() if deployment.access_log.exists() else []


def _upstreams(deployment: Deployment, port: str, method: str, path: str, since: int = 0) -> list[str]:
    """The backends nginx sent matching requests to (logged after line `since`), from its access log; a request
    nginx retried on another backend counts for the one that answered (the last of $upstream_addr)."""
    found = []
    for line in _log_lines(deployment)[since:]:
        fields = line.split(" ", 3)
        if fields[:3] == [port, method, path]:
            found.append(fields[3].split(", ")[-1])
    return found


def _await_upstreams(deployment: Deployment, port: str, method: str, path: str, since: int) -> list[str]:
    # nginx writes a websocket's line when it closes, a moment after the browser closed it.
    deadline = time.monotonic() + 30
    while not (found := _upstreams(deployment, port, method, path, since)):
        if time.monotonic() > deadline:
            raise AssertionError(f"no {method} {path} on port {port} in nginx's log")
        time.sleep(0.2)
    return found


def test_nginx_serves_the_build_like_the_backend_and_balances_the_rest(deployment: Deployment) -> None:
    base = deployment.balanced
    mark = len(_log_lines(deployment))
    page = httpx.get(f"{base}/login", timeout=10)
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-cache"
    # The backend's own policy, with the hashes of this build's inline scripts (ops/nginx/render_csp.py).
    assert page.headers["content-security-policy"].startswith("default-src 'self'; script-src 'self' 'unsafe-eval' ")
    assert "'sha256-" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    asset = re.search(r'src="(/assets/[^"]+\.js)"', page.text) or re.search(r'href="(/assets/[^"]+\.js)"', page.text)
    assert asset is not None
    cached = httpx.get(f"{base}{asset.group(1)}", timeout=10)
    assert cached.status_code == 200
    assert cached.headers["cache-control"] == "public, max-age=31536000, immutable"
    # A dynamic route has no file of its own: Reflex's SPA shell. An unknown path: the build's 404 page, with 404.
    shell = httpx.get(f"{base}/patient/provider/6f1c8a52-0000-4000-8000-000000000000", timeout=10)
    assert shell.status_code == 200
    assert "<html" in shell.text.lower()
    assert httpx.get(f"{base}/no-such-page", timeout=10).status_code == 404
    # The API through the balanced upstream: both backends answer, with their own headers.
    for _ in range(4):
        ready = httpx.get(f"{base}/api/ready", timeout=10)
        assert ready.status_code == 200
        assert ready.headers["cache-control"] == "no-store"
        assert ready.headers["x-frame-options"] == "DENY"
    port = base.rsplit(":", 1)[1]
    assert set(_upstreams(deployment, port, "GET", "/api/ready", mark)) == set(deployment.backends)


def test_a_booking_through_backend_one_shows_live_on_pages_served_by_backend_two(
    browser: Browser, deployment: Deployment
) -> None:
    via_1, via_2 = deployment.via_1, deployment.via_2
    mark = len(_log_lines(deployment))
    david = api_token(via_1, DAVID)
    jordan = provider_id(via_1, david, JORDAN)
    now = datetime.now(UTC)
    soon = api_get(
        via_1,
        david,
        f"/providers/{jordan}/slots",
        start=now.isoformat(),
        end=(now + timedelta(days=6, hours=20)).isoformat(),
        include_taken="false",
    )
    slot = _afternoon(soon, _busy(via_1, david))
    local = _local(slot["start"])

    contexts = [_context(browser) for _ in range(2)]
    try:
        # The doctor's Today page and another patient's booking grid (a dynamic route), both through backend 2.
        today = _signed_in(contexts[0], via_2, DOCTOR, "doctor")
        expect(today.get_by_text(re.compile(r"^\w+day \d\d \w+ \d{4}$"))).to_be_visible()
        next_week = today.get_by_text("Next 7 days", exact=True).locator("xpath=following-sibling::*[1]")
        expect(next_week).to_have_text(re.compile(r"^\d+$"))
        before = int(next_week.inner_text())
        row = today.get_by_role("row").filter(has_text=f"{local:%H:%M}–").filter(has_text="David Kim")
        expect(row).to_have_count(0)
        grid = _open_grid(contexts[1], via_2, jordan, slot["start"])
        expect(_grid_slot(grid, slot["start"])).to_have_attribute("data-status", "free")

        booked = _api(via_1, david, "POST", "/appointments", provider_id=jordan, start=slot["start"])
        assert booked.status_code == 201, booked.text
        expect(next_week).to_have_text(str(before + 1))
        expect(row).to_have_count(1)
        expect(_grid_slot(grid, slot["start"])).to_have_attribute("data-status", "booked")
    finally:
        for ctx in contexts:
            ctx.close()

    backend_1, backend_2 = deployment.backends
    assert _upstreams(deployment, via_1.rsplit(":", 1)[1], "POST", "/api/v1/appointments", mark) == [backend_1]
    sockets = _await_upstreams(deployment, via_2.rsplit(":", 1)[1], "GET", "/_event/", mark)
    assert set(sockets) == {backend_2}
