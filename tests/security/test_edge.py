"""The edge middleware on the REST API (backend/api/edge.py): security headers, CORS, cross-site request refusal."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from backend.api.app import api
from backend.api.edge import EdgeMiddleware, build_script_hashes, socket_origin_allowed
from backend.api.routes import auth as auth_routes
from backend.identity.models import UserSession
from backend.identity.service import actor_from_session
from backend.settings import get_settings
from tests.factories import TEST_PASSWORD, Practice, make_practice, rows

SAME = "http://testserver"  # TestClient's own origin (scheme and Host)
EVIL = "https://evil.example"
REFUSED = {"detail": "Cross-site request refused.", "code": "cross_site_refused"}


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(api, follow_redirects=False) as c:
        yield c


@pytest.fixture
def harbor(db: sa.Engine) -> Practice:
    return make_practice("Harbor Mental Health", "harbor")


@pytest.fixture
def partner_origin(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(get_settings(), "allowed_origins", ["https://partner.example"])
    return "https://partner.example"


def assert_edge_headers(response: httpx.Response, *, cacheable: bool = False) -> None:
    h = response.headers
    csp = h["content-security-policy"]
    for directive in (
        "default-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "object-src 'none'",
        "connect-src 'self'",
    ):
        assert directive in csp, (directive, csp)
    script_src = next(d for d in csp.split("; ") if d.startswith("script-src "))
    # No inline script outside the build; 'unsafe-eval' is there for the scripts Reflex's own server sends (toasts).
    assert "'unsafe-inline'" not in script_src
    assert h["x-frame-options"] == "DENY"
    assert h["x-content-type-options"] == "nosniff"
    assert h["referrer-policy"] == "strict-origin-when-cross-origin"
    for feature in ("camera=()", "microphone=()", "geolocation=()", "payment=()"):
        assert feature in h["permissions-policy"]
    assert not h.get("server"), f"server banner: {h.get('server')!r}"
    assert len(h.get_list("content-security-policy")) == 1
    if not cacheable:
        assert h["cache-control"] == "no-store"


def _cookie(response: httpx.Response) -> SimpleCookie:
    jar: SimpleCookie = SimpleCookie()
    for header in response.headers.get_list("set-cookie"):
        jar.load(header)
    return jar


def _login(client: TestClient, email: str, headers: dict[str, str], password: str = TEST_PASSWORD) -> httpx.Response:
    return client.post("/auth/login", data={"email": email, "password": password}, headers=headers)


# -- security headers ------------------------------------------------------------------------------------------


def test_headers_on_200_401_404_and_422(client: TestClient, db: sa.Engine) -> None:
    ok = client.get("/api/health")
    unauthorized = client.get("/api/v1/me")
    missing = client.get("/api/v1/no-such-thing")
    invalid = client.post("/api/v1/auth/token", json={})
    assert [r.status_code for r in (ok, unauthorized, missing, invalid)] == [200, 401, 404, 422]
    for response in (ok, unauthorized, missing, invalid):
        assert_edge_headers(response)
        assert "strict-transport-security" not in response.headers  # plain HTTP


def test_openapi_document_is_not_cached(client: TestClient) -> None:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert_edge_headers(response)


def test_hsts_only_over_https(client: TestClient) -> None:
    with TestClient(api, base_url="https://testserver") as secure:
        response = secure.get("/api/health")
    assert response.headers["strict-transport-security"].startswith("max-age=")
    assert "strict-transport-security" not in client.get("/api/health").headers
    # An untrusted peer cannot switch HSTS (or its own origin) on with X-Forwarded-Proto.
    spoofed = client.get("/api/health", headers={"X-Forwarded-Proto": "https"})
    assert "strict-transport-security" not in spoofed.headers


def test_forwarded_proto_is_believed_from_a_trusted_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings(), "trusted_proxies", "127.0.0.1")
    with TestClient(api, base_url="http://clinic.example", client=("127.0.0.1", 5000), follow_redirects=False) as c:
        response = c.get("/api/health", headers={"X-Forwarded-Proto": "https"})
        assert response.headers["strict-transport-security"].startswith("max-age=")
        # Behind the TLS proxy the browser's origin is https://<host>: that is same-origin.
        tls = {"X-Forwarded-Proto": "https"}
        assert c.post("/auth/logout", headers={**tls, "Origin": "https://clinic.example"}).status_code == 303
        assert c.post("/auth/logout", headers={**tls, "Origin": "http://clinic.example"}).status_code == 403


def test_swagger_ui_gets_its_own_csp_with_the_hash_of_its_inline_script(client: TestClient) -> None:
    response = client.get("/api/v1/docs")
    assert response.status_code == 200
    csp = response.headers["content-security-policy"]
    body = response.text
    inline = body[body.index("<script>") + len("<script>") : body.rindex("</script>")]
    digest = base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in csp
    assert "frame-ancestors 'none'" in csp and "'unsafe-eval'" not in csp
    assert response.headers["x-frame-options"] == "DENY"


def test_page_csp_hashes_the_inline_scripts_of_the_build(tmp_path: Path) -> None:
    (tmp_path / "page").mkdir()
    (tmp_path / "page" / "index.html").write_text(
        '<html><script>window.a = 1;</script><script src="/assets/x.js"></script>'
        '<script type="module">import("/assets/y.js");</script></html>'
    )

    def sha(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"

    hashes = build_script_hashes(tmp_path)
    assert set(hashes) == {sha("window.a = 1;"), sha('import("/assets/y.js");')}

    async def page(scope: Any, receive: Any, send: Any) -> None:
        await PlainTextResponse("<html></html>", media_type="text/html")(scope, receive, send)

    csp = TestClient(EdgeMiddleware(page, build_dir=tmp_path)).get("/").headers["content-security-policy"]
    script_src = next(d for d in csp.split("; ") if d.startswith("script-src "))
    assert script_src == "script-src 'self' 'unsafe-eval' " + " ".join(sorted(hashes))


def test_nested_middleware_runs_once(client: TestClient) -> None:
    with TestClient(EdgeMiddleware(api)) as outer:
        response = outer.get("/api/health", headers={"Origin": EVIL})
    assert_edge_headers(response)
    assert "access-control-allow-origin" not in response.headers


def test_hashed_assets_are_immutable_pages_revalidate_and_the_rest_is_not_stored() -> None:
    async def inner(scope: Any, receive: Any, send: Any) -> None:
        path = scope["path"]
        if path.endswith(".missing.js"):
            response = PlainTextResponse("gone", status_code=404)
        elif path.endswith(".js"):
            response = PlainTextResponse("x", headers={"Cache-Control": "max-age=60"})  # ours replaces it
        elif path.startswith("/api/v1/data"):
            response = PlainTextResponse('{"a": 1}', media_type="application/json")
        else:
            response = PlainTextResponse("<html></html>", media_type="text/html")
        await response(scope, receive, send)

    c = TestClient(EdgeMiddleware(inner))  # (no lifespan: a bare ASGI function)
    immutable = "public, max-age=31536000, immutable"
    assert c.get("/assets/_login_._index-D5xwKK4M.js").headers["cache-control"] == immutable
    assert c.get("/_next/static/chunks/main-0123abcd4567.js").headers["cache-control"] == immutable
    # A name without a content hash could change under the same URL; a missing asset is not cached either.
    assert c.get("/assets/app.js").headers["cache-control"] == "no-store"
    assert c.get("/assets/x-D5xwKK4M.missing.js").headers["cache-control"] == "no-store"
    # The compiled pages: stored, but revalidated on every use (a deploy shows at once).
    assert c.get("/login").headers["cache-control"] == "no-cache"
    assert c.get("/patient/appointments/").headers["cache-control"] == "no-cache"
    # HTML or not, what the API and /auth send is never stored.
    assert c.get("/api/v1/data").headers["cache-control"] == "no-store"
    assert c.get("/api/v1/page").headers["cache-control"] == "no-store"
    assert c.get("/auth/sso/callback").headers["cache-control"] == "no-store"
    assert "pragma" not in c.get("/login").headers


# -- CORS ------------------------------------------------------------------------------------------------------


def test_a_foreign_origin_gets_no_cors_headers(client: TestClient) -> None:
    response = client.get("/api/health", headers={"Origin": EVIL})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
    assert "access-control-allow-credentials" not in response.headers
    preflight = client.options("/api/v1/me", headers={"Origin": EVIL, "Access-Control-Request-Method": "GET"})
    assert preflight.status_code == 403
    assert "access-control-allow-origin" not in preflight.headers
    assert_edge_headers(preflight)


def test_same_origin_needs_no_cors_and_works(client: TestClient) -> None:
    response = client.get("/api/health", headers={"Origin": SAME})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers  # same origin: the browser needs none


def test_a_configured_origin_gets_credentialed_cors(client: TestClient, partner_origin: str) -> None:
    response = client.get("/api/health", headers={"Origin": partner_origin})
    assert response.headers["access-control-allow-origin"] == partner_origin
    assert response.headers["access-control-allow-credentials"] == "true"
    assert "Origin" in response.headers["vary"]
    preflight = client.options(
        "/api/v1/me",
        headers={"Origin": partner_origin, "Access-Control-Request-Method": "GET",
                 "Access-Control-Request-Headers": "authorization"},
    )  # fmt: skip
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == partner_origin
    assert preflight.headers["access-control-allow-headers"] == "authorization"


def test_public_url_origin_is_configured_by_default(client: TestClient) -> None:
    origin = get_settings().trusted_origins[0]
    assert client.get("/api/health", headers={"Origin": origin}).headers["access-control-allow-origin"] == origin


# -- cross-site requests ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": EVIL},
        {"Origin": "null"},
        {"Referer": f"{EVIL}/phish"},
        {},  # neither Origin nor Referer
        {"Origin": EVIL, "Referer": f"{SAME}/login"},  # Origin wins over a Referer
    ],
    ids=["origin", "null-origin", "referer", "none", "origin-over-referer"],
)
def test_cross_site_login_is_refused_and_changes_nothing(
    client: TestClient, harbor: Practice, headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real = auth_routes.identity.authenticate
    monkeypatch.setattr(auth_routes.identity, "authenticate", lambda **kw: calls.append(kw["email"]) or real(**kw))
    good = _login(client, harbor.patient_user.email, headers)
    bad = _login(client, harbor.patient_user.email, headers, password="wrong")
    for response in (good, bad):
        assert response.status_code == 403
        assert response.json() == REFUSED
        assert "set-cookie" not in response.headers
        assert_edge_headers(response)
    assert rows(harbor, UserSession) == []
    assert calls == []  # the login route never ran: no session, no throttling state, nothing
    assert _login(client, harbor.patient_user.email, {"Origin": SAME}).status_code == 303
    assert calls == [harbor.patient_user.email]  # (the spy does see a login that gets through)


@pytest.mark.parametrize("headers", [{"Origin": SAME}, {"Referer": f"{SAME}/login"}], ids=["origin", "referer"])
def test_same_origin_login_works(client: TestClient, harbor: Practice, headers: dict[str, str]) -> None:
    response = _login(client, harbor.patient_user.email, headers)
    assert response.status_code == 303
    assert response.headers["location"] == "/patient"
    assert _cookie(response)[get_settings().session_cookie_name].value
    assert len(rows(harbor, UserSession)) == 1
    assert_edge_headers(response)


def test_cross_site_logout_leaves_the_session_alone(client: TestClient, harbor: Practice) -> None:
    name = get_settings().session_cookie_name
    token = _cookie(_login(client, harbor.patient_user.email, {"Origin": SAME}))[name].value
    assert client.cookies.get(name) == token

    for headers in ({"Origin": EVIL}, {"Referer": f"{EVIL}/"}, {}):
        refused = client.post("/auth/logout", headers=headers)
        assert refused.status_code == 403
        assert refused.json() == REFUSED
        assert "set-cookie" not in refused.headers
    assert actor_from_session(token) is not None
    (session,) = rows(harbor, UserSession)
    assert session.revoked_at is None

    done = client.post("/auth/logout", headers={"Origin": SAME})
    assert done.status_code == 303
    assert actor_from_session(token) is None


@pytest.mark.parametrize("cookie", ["clinic_session", "__Host-clinic_session"])
def test_any_cookie_bearing_state_change_needs_a_trusted_origin(
    client: TestClient, harbor: Practice, cookie: str
) -> None:
    name = cookie.replace("clinic_session", get_settings().session_cookie_name)
    headers = {"Cookie": f"{name}=anything", "Content-Type": "application/json"}
    refused = client.post("/api/v1/auth/token", content=b"{}", headers={**headers, "Origin": EVIL})
    assert refused.status_code == 403
    assert refused.json() == REFUSED
    allowed = client.post("/api/v1/auth/token", content=b"{}", headers={**headers, "Origin": SAME})
    assert allowed.status_code == 422  # reached the route (and its validation)
    # A cookie-bearing GET is not a state change.
    assert client.get("/api/health", headers={"Cookie": f"{name}=x", "Origin": EVIL}).status_code == 200


def test_bearer_requests_without_cookies_are_unaffected(client: TestClient, harbor: Practice) -> None:
    token = client.post("/api/v1/auth/token", json={"email": harbor.patient_user.email, "password": TEST_PASSWORD})
    assert token.status_code == 200  # a POST with neither Origin nor Referer nor cookie
    auth = {"Authorization": f"Bearer {token.json()['access_token']}"}
    assert client.get("/api/v1/me", headers=auth).status_code == 200
    cross = client.post(
        "/api/v1/auth/token",
        json={"email": harbor.patient_user.email, "password": TEST_PASSWORD},
        headers={"Origin": EVIL},
    )
    assert cross.status_code == 200  # not cookie-authenticated; and the browser cannot read it (no CORS)
    assert "access-control-allow-origin" not in cross.headers


# -- the event socket ------------------------------------------------------------------------------------------


def _socket_app() -> Starlette:
    async def handshake(request: Request) -> PlainTextResponse:
        return PlainTextResponse("0{}")

    async def socket(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("hello")
        await websocket.close()

    return Starlette(routes=[Route("/_event/", handshake), WebSocketRoute("/_event/", socket)])


def test_a_websocket_from_a_foreign_origin_is_refused() -> None:
    with TestClient(EdgeMiddleware(_socket_app())) as c:
        with pytest.raises(WebSocketDisconnect) as refused:
            with c.websocket_connect("/_event/?EIO=4&transport=websocket", headers={"Origin": EVIL}):
                pass
        assert refused.value.code == 1008
        with c.websocket_connect("/_event/?EIO=4&transport=websocket", headers={"Origin": SAME}) as ws:
            assert ws.receive_text() == "hello"
        polling = c.get("/_event/?EIO=4&transport=polling", headers={"Origin": EVIL})
        assert polling.status_code == 403
        assert polling.json() == REFUSED
        assert "access-control-allow-origin" not in polling.headers
        assert c.get("/_event/?EIO=4&transport=polling", headers={"Origin": SAME}).status_code == 200


def test_the_socket_server_uses_the_same_rule() -> None:
    scope = {"type": "websocket", "scheme": "ws", "headers": [(b"host", b"clinic.example:3000")]}
    environ = {"HTTP_HOST": "clinic.example:3000", "wsgi.url_scheme": "http", "asgi.scope": scope}
    assert socket_origin_allowed("http://clinic.example:3000", environ)
    assert not socket_origin_allowed(EVIL, environ)
    assert not socket_origin_allowed("null", environ)
    assert socket_origin_allowed(get_settings().trusted_origins[0], environ)
