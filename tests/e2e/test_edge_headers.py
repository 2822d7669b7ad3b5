"""The served app (production build, one port) behind the edge middleware: headers, CORS, CSRF, socket, CSP."""

from __future__ import annotations

import re
import socket
from base64 import b64encode
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from playwright.sync_api import ConsoleMessage, Page, expect

from tests.e2e.conftest import ROOT
from tests.e2e.test_portal import sign_in

EVIL = "https://evil.example"
REFUSED = {"detail": "Cross-site request refused.", "code": "cross_site_refused"}
# Records every CSP violation the page reports, from before its first script runs.
CSP_LISTENER = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
});
"""


IMMUTABLE = "public, max-age=31536000, immutable"


def assert_edge_headers(response: httpx.Response, *, cache: str = "no-store") -> None:
    h = response.headers
    csp = h["content-security-policy"]
    for directive in ("frame-ancestors 'none'", "base-uri 'self'", "form-action 'self'", "object-src 'none'"):
        assert directive in csp, (directive, csp)
    script_src = next(d for d in csp.split("; ") if d.startswith("script-src "))
    # No inline script outside the build; 'unsafe-eval' is there for the scripts Reflex's own server sends (toasts).
    assert "'unsafe-inline'" not in script_src and "'sha256-" in script_src
    assert h["x-frame-options"] == "DENY"
    assert h["x-content-type-options"] == "nosniff"
    assert h["referrer-policy"] == "strict-origin-when-cross-origin"
    assert "camera=()" in h["permissions-policy"] and "microphone=()" in h["permissions-policy"]
    assert not h.get("server"), f"server banner: {h.get('server')!r}"  # granian's "granian" is blanked
    assert "strict-transport-security" not in h  # plain HTTP
    assert h["cache-control"] == cache, (str(response.url), h["cache-control"])


def test_pages_assets_api_and_404_carry_the_headers(app_url: str) -> None:
    page = httpx.get(f"{app_url}/login/")
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert_edge_headers(page, cache="no-cache")  # a compiled page: revalidated, so a deploy shows at once
    # Every inline script of the served page is allowed by hash, and nothing else inline is.
    csp = page.headers["content-security-policy"]
    assert "'sha256-" in csp
    asset_path = re.search(r'src="(/assets/[^"]+\.js)"|href="(/assets/[^"]+\.js)"', page.text)
    assert asset_path, "the page links a built asset"
    asset = httpx.get(app_url + (asset_path.group(1) or asset_path.group(2)))
    assert asset.status_code == 200
    assert_edge_headers(asset, cache=IMMUTABLE)  # content-hashed: a new build has new names
    assert asset.headers.get("etag")
    openapi = httpx.get(f"{app_url}/api/v1/openapi.json")
    assert openapi.status_code == 200
    assert_edge_headers(openapi)
    missing = httpx.get(f"{app_url}/no/such/page-at-all.txt")
    assert missing.status_code == 404
    assert_edge_headers(missing, cache="no-cache")  # the app's 404 page (HTML; test_small_things looks at it)
    missing_asset = httpx.get(f"{app_url}/assets/gone-D5xwKK4M.js")
    assert missing_asset.status_code == 404
    assert missing_asset.headers["cache-control"] == "no-cache"  # not a year: the name may be built later
    api_missing = httpx.get(f"{app_url}/api/v1/nothing-here")
    assert api_missing.status_code == 404
    assert_edge_headers(api_missing)


def test_a_foreign_origin_gets_no_cors_on_pages_and_api(app_url: str) -> None:
    for path in ("/login/", "/api/health", "/api/v1/openapi.json", "/ping"):
        response = httpx.get(app_url + path, headers={"Origin": EVIL})
        assert response.status_code == 200, path
        assert "access-control-allow-origin" not in response.headers, path
        assert "access-control-allow-credentials" not in response.headers, path
    preflight = httpx.options(f"{app_url}/api/v1/me", headers={"Origin": EVIL, "Access-Control-Request-Method": "GET"})
    assert preflight.status_code == 403
    assert "access-control-allow-origin" not in preflight.headers


def _websocket_handshake_status(app_url: str, origin: str) -> int:
    """Open the event socket's websocket handshake by hand and return the HTTP status line's code."""
    url = urlsplit(app_url)
    key = b64encode(b"waitwell-edge-e2e").decode()
    request = (
        f"GET /_event/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {url.netloc}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n\r\n"
    )
    with socket.create_connection((url.hostname, url.port), timeout=10) as conn:
        conn.sendall(request.encode())
        status_line = conn.recv(4096).split(b"\r\n", 1)[0].decode()
    return int(status_line.split()[1])


def test_the_event_socket_refuses_a_foreign_origin(app_url: str) -> None:
    assert _websocket_handshake_status(app_url, EVIL) == 403
    assert _websocket_handshake_status(app_url, app_url) == 101  # same origin: the real socket still opens
    polling = httpx.get(f"{app_url}/_event/?EIO=4&transport=polling", headers={"Origin": EVIL})
    assert polling.status_code == 403
    assert polling.json() == REFUSED
    assert "access-control-allow-origin" not in polling.headers


def test_a_cross_site_login_post_is_refused(app_url: str) -> None:
    form = {"email": "alice@harbor.example", "password": "demo-pass-2026"}
    refused = httpx.post(f"{app_url}/auth/login", data=form, headers={"Origin": EVIL})
    assert refused.status_code == 403
    assert refused.json() == REFUSED
    assert "set-cookie" not in refused.headers
    assert_edge_headers(refused)
    same = httpx.post(f"{app_url}/auth/login", data=form, headers={"Origin": app_url})
    assert same.status_code == 303 and same.headers["location"] == "/patient"
    assert "set-cookie" in same.headers


def test_signed_in_pages_run_under_the_csp_without_violations(page: Page, app_url: str) -> None:
    console: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            console.append(message.text)

    page.on("console", on_console)
    page.context.add_init_script(CSP_LISTENER)
    sign_in(page, app_url, "alice@harbor.example")
    expect(page).to_have_url(re.compile(r"/patient/?$"))
    expect(page.get_by_role("heading", name="Hello, Alice Morgan")).to_be_visible()
    expect(page.get_by_role("heading", name="Upcoming appointments")).to_be_visible()
    # Live data arrived over the event socket (the appointment list is filled by the backend state).
    expect(page.get_by_text("Dr. Elena Rivera, MD").first).to_be_visible()
    # Client-side navigation to another page, then a full reload (prerendered HTML, inline scripts).
    page.goto(f"{app_url}/patient/appointments")
    expect(page.get_by_role("heading", name=re.compile("appointments", re.I)).first).to_be_visible()
    page.goto(f"{app_url}/patient")
    expect(page.get_by_role("heading", name="Hello, Alice Morgan")).to_be_visible()
    # The CSP is really in force on the document.
    response = page.request.get(f"{app_url}/patient")
    assert "script-src 'self' 'unsafe-eval' 'sha256-" in response.headers["content-security-policy"]
    out = ROOT / "test-artifacts"
    out.mkdir(exist_ok=True)
    page.screenshot(path=str(Path(out / "edge-patient-home-under-csp.png")), full_page=True)
    violations = page.evaluate("window.__cspViolations")
    csp_console = [text for text in console if "Content Security Policy" in text or "Refused to" in text]
    assert violations == [], violations
    assert csp_console == [], csp_console
    # Styles applied (Emotion's runtime <style> elements are allowed): the heading is not the UA default font.
    family = page.get_by_role("heading", name="Hello, Alice Morgan").evaluate("e => getComputedStyle(e).fontFamily")
    assert family and "Times" not in family
    # And the listener does see a violation: an inline script that is not part of the build is blocked.
    page.evaluate("""() => { const s = document.createElement('script'); s.textContent = 'window.__x = 1';
                              document.body.appendChild(s); }""")
    expect(page.locator("body")).to_be_visible()
    page.wait_for_function("window.__cspViolations.length > 0")
    assert page.evaluate("window.__x") is None
