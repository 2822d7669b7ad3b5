"""The edge of every response: CORS, cross-site request refusal and security headers, as pure ASGI middleware.

Installed on the standalone API (`install_edge`) and around the whole Reflex backend (`edge_transformer`, see
portal/portal.py): pages, static files, /api, /auth and the event socket. It is written against raw ASGI rather
than BaseHTTPMiddleware so streaming responses and websockets pass through untouched.

- Origins. An Origin is trusted when it equals the request's own origin (its scheme and Host header: a browser
  cannot forge either for a cross-site request) or is configured (`Settings.trusted_origins`: the origin of
  PUBLIC_URL plus ALLOWED_ORIGINS). Only configured origins get CORS headers (with credentials); preflights from
  any other origin are refused. The event socket (websocket, and HTTP to /_event) refuses a foreign Origin.
- Cross-site requests (login CSRF and friends). A state change (not GET/HEAD/OPTIONS) to /auth/*, or one that
  carries the session cookie, needs a trusted Origin, else a trusted Referer; with neither it is refused with
  403 {"detail": "Cross-site request refused."} before the app sees it. Bearer-token requests without cookies
  are not affected.
- Headers on every HTTP response: Content-Security-Policy, X-Frame-Options, X-Content-Type-Options,
  Referrer-Policy, Permissions-Policy, Cross-Origin-Opener-Policy, Strict-Transport-Security on HTTPS, and
  Cache-Control: a year and immutable for the content-hashed build assets (a new build has new names), no-cache
  for the compiled HTML pages (static shells without patient data: the browser revalidates them, so a deploy
  shows at once), no-store for everything else (the API, /auth, the event socket). The Server banner is blanked.

Content-Security-Policy: scripts are 'self' plus the sha256 of each inline <script> of the compiled pages
(.web/build/client/**/*.html, read once per process), so no inline script outside the build runs. Scripts also
need 'unsafe-eval': Reflex's event protocol has the server send small scripts the client evaluates (every toast
is one, and rx.call_script); without it no confirmation or error toast appears. Styles need
'unsafe-inline': Emotion (Reflex's CSS-in-JS) injects <style> elements at runtime without a nonce, and Radix
sets style="" attributes; neither can be hashed ahead of time. Only when Stripe is configured for the browser
(PAYMENTS_MODE=stripe with STRIPE_PUBLISHABLE_KEY) may pages load Stripe.js from js.stripe.com, frame its card
form (js.stripe.com, hooks.stripe.com for 3-D Secure) and let it talk to api.stripe.com; never otherwise.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from backend.api import proxies
from backend.settings import PROJECT_ROOT, Settings, get_settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REFUSED_DETAIL = "Cross-site request refused."
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
# Reflex's event socket (websocket transport; HTTP polling handshakes land here too).
EVENT_PATH = "/_event"
# Vite's content-hashed build output (Next.js's under older Reflex): safe to cache for good, carries no patient
# data; only names that carry a content hash (name-<8+ chars>.ext) are immutable.
CACHEABLE_PREFIXES = ("/assets/", "/_next/static/")
_HASHED_NAME = re.compile(r"[-.][A-Za-z0-9_-]{8,}\.[A-Za-z0-9]+$")
IMMUTABLE = b"public, max-age=31536000, immutable"
REVALIDATE = b"no-cache"
NO_STORE = b"no-store"
# Paths whose HTML is never a compiled page (the API's error pages, Swagger UI, the auth routes).
_DYNAMIC_PREFIXES = ("/api/", "/auth/", EVENT_PATH)
# FastAPI's Swagger UI: a fixed page (no request data in it) that loads its bundle from a CDN.
DOCS_PATHS = frozenset({"/api/v1/docs"})
DOCS_CDN = "https://cdn.jsdelivr.net"
_SCOPE_MARK = "waitwell.edge"

PERMISSIONS_POLICY = (
    "accelerometer=(), autoplay=(), camera=(), display-capture=(), geolocation=(), gyroscope=(), "
    "magnetometer=(), microphone=(), midi=(), payment=(), usb=(), browsing-topics=()"
)
_INLINE_SCRIPT_RE = re.compile(rb"<script\b([^>]*)>(.*?)</script\s*>", re.IGNORECASE | re.DOTALL)
_SRC_ATTR_RE = re.compile(rb"\bsrc\s*=", re.IGNORECASE)
_DEFAULT_PORTS = {"http": "80", "https": "443"}


# -- origins ---------------------------------------------------------------------------------------------------


def normalize_origin(value: str | None) -> str | None:
    """`scheme://host[:port]` in lower case without a default port, or None for anything else ("null", junk)."""
    if not value:
        return None
    try:
        parts = urlsplit(value.strip())
        host = parts.hostname
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if port is not None and str(port) != _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}:{port}"
    return f"{scheme}://{host}"


def _headers(scope: Scope) -> dict[bytes, bytes]:
    # Later duplicates win except for Cookie, which is joined as RFC 6265 allows.
    out: dict[bytes, bytes] = {}
    for name, value in scope.get("headers") or ():
        key = bytes(name).lower()
        if key == b"cookie" and key in out:
            out[key] = out[key] + b"; " + bytes(value)
        else:
            out[key] = bytes(value)
    return out


def _is_trusted_proxy(scope: Scope, settings: Settings) -> bool:
    client = scope.get("client")
    return proxies.is_trusted_proxy(str(client[0]) if client else None, settings.trusted_proxies)


def is_https(scope: Scope, settings: Settings, headers: dict[bytes, bytes] | None = None) -> bool:
    """Whether the browser reached us over TLS: directly, or through a trusted proxy's X-Forwarded-Proto."""
    if scope.get("scheme") in ("https", "wss"):
        return True
    headers = _headers(scope) if headers is None else headers
    forwarded = headers.get(b"x-forwarded-proto", b"").decode("latin-1").split(",")[0].strip().lower()
    return forwarded == "https" and _is_trusted_proxy(scope, settings)


def own_origin(scope: Scope, settings: Settings, headers: dict[bytes, bytes] | None = None) -> str | None:
    """The origin this request was addressed to: its (effective) scheme and its Host header."""
    headers = _headers(scope) if headers is None else headers
    host = headers.get(b"host", b"").decode("latin-1").strip()
    if not host:
        server = scope.get("server")
        if not server:
            return None
        host = f"{server[0]}:{server[1]}" if server[1] is not None else str(server[0])
    scheme = "https" if is_https(scope, settings, headers) else "http"
    return normalize_origin(f"{scheme}://{host}")


def is_configured_origin(origin: str | None, settings: Settings) -> bool:
    return origin is not None and origin in _configured(settings.trusted_origins)


@lru_cache(maxsize=8)
def _configured(origins: tuple[str, ...]) -> frozenset[str]:
    return frozenset(o for o in (normalize_origin(v) for v in origins) if o)


def origin_allowed(origin: str | None, scope: Scope, settings: Settings | None = None) -> bool:
    """True for the request's own origin and for configured origins; False for others, "null" and junk."""
    settings = settings or get_settings()
    normalized = normalize_origin(origin)
    if normalized is None:
        return False
    return normalized == own_origin(scope, settings) or is_configured_origin(normalized, settings)


def socket_origin_allowed(origin: str | None, environ: dict[str, Any]) -> bool:
    """engine.io's `cors_allowed_origins` callable: the same rule for the socket server behind the middleware."""
    if not origin:
        return True  # not a browser (browsers always send Origin on websocket and CORS requests)
    headers = [
        (key[5:].lower().replace("_", "-").encode("latin-1"), str(value).encode("latin-1"))
        for key, value in environ.items()
        if key.startswith("HTTP_")
    ]
    scope: Scope = {"scheme": environ.get("wsgi.url_scheme", "http"), "headers": headers}
    asgi_scope = environ.get("asgi.scope")
    if isinstance(asgi_scope, dict):
        scope = {**asgi_scope, "headers": asgi_scope.get("headers") or headers}
    return origin_allowed(origin, scope)


def _request_source(headers: dict[bytes, bytes]) -> str | None:
    """The Origin, else the Referer's origin; None when neither was sent (or Origin is "null")."""
    origin = headers.get(b"origin")
    if origin is not None:
        return normalize_origin(origin.decode("latin-1"))
    referer = headers.get(b"referer")
    return normalize_origin(referer.decode("latin-1")) if referer is not None else None


def carries_session_cookie(headers: dict[bytes, bytes], settings: Settings) -> bool:
    """A cookie whose name ends with the session cookie's base name (so `__Host-` prefixed ones count too)."""
    raw = headers.get(b"cookie")
    if not raw:
        return False
    suffix = settings.session_cookie_name
    for pair in raw.decode("latin-1").split(";"):
        name = pair.split("=", 1)[0].strip()
        if name and name.endswith(suffix):
            return True
    return False


# -- content security policy -----------------------------------------------------------------------------------


def web_build_dir() -> Path:
    """Where the production build's HTML lives (Reflex serves the single-port frontend from here)."""
    workdir = os.environ.get("REFLEX_WEB_WORKDIR")
    base = Path(workdir) if workdir else PROJECT_ROOT / ".web"
    return base / "build" / "client"


def inline_script_hashes(html: bytes) -> list[str]:
    """CSP source expressions ('sha256-…') for each inline <script> element of an HTML document."""
    out: list[str] = []
    for attrs, body in _INLINE_SCRIPT_RE.findall(html):
        if _SRC_ATTR_RE.search(attrs):
            continue
        digest = base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")
        source = f"'sha256-{digest}'"
        if source not in out:
            out.append(source)
    return out


@lru_cache(maxsize=4)
def build_script_hashes(build_dir: Path) -> tuple[str, ...]:
    """The union of inline script hashes of every compiled page, sorted; empty when there is no build."""
    found: set[str] = set()
    if build_dir.is_dir():
        for path in build_dir.rglob("*.html"):
            found.update(inline_script_hashes(path.read_bytes()))
    return tuple(sorted(found))


@lru_cache(maxsize=8)
def _page_csp_header(build_dir: Path, stripe: bool = False) -> bytes:
    """The pages' CSP header value, built once per process (like the script hashes it names)."""
    return page_csp(build_script_hashes(build_dir), stripe=stripe).encode("latin-1")


# Stripe.js and its card form (Elements), allowed only when Stripe is configured for the browser.
STRIPE_JS = "https://js.stripe.com"
STRIPE_FRAMES = ("https://js.stripe.com", "https://hooks.stripe.com")
STRIPE_API = "https://api.stripe.com"


def stripe_in_browser(settings: Settings) -> bool:
    """Whether pages may load Stripe.js: Stripe mode with a publishable key."""
    return settings.payments_mode == "stripe" and bool(settings.stripe_publishable_key)


def page_csp(script_hashes: Iterable[str], *, stripe: bool = False) -> str:
    # 'unsafe-eval': Reflex's client evaluates the scripts its server sends (toasts, call_script): see the module doc.
    scripts = " ".join(["'self'", "'unsafe-eval'", *([STRIPE_JS] if stripe else []), *script_hashes])
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src {scripts}",
            # Emotion injects <style> elements at runtime and Radix sets style attributes: see the module doc.
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data: blob:",
            "font-src 'self' data:",
            # 'self' covers the same-origin ws:/wss: event socket in CSP Level 3 browsers.
            "connect-src 'self'" + (f" {STRIPE_API}" if stripe else ""),
            *([f"frame-src {' '.join(STRIPE_FRAMES)}"] if stripe else []),
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def docs_csp(script_hashes: Iterable[str]) -> str:
    scripts = " ".join([f"{DOCS_CDN}/npm/", *script_hashes])
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src {scripts}",
            f"style-src {DOCS_CDN}/npm/ 'unsafe-inline'",
            "img-src 'self' data: https://fastapi.tiangolo.com",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


# -- the middleware --------------------------------------------------------------------------------------------


_STRIPPED = frozenset(
    {
        b"server",
        b"content-security-policy",
        b"x-frame-options",
        b"x-content-type-options",
        b"referrer-policy",
        b"permissions-policy",
        b"cross-origin-opener-policy",
        b"strict-transport-security",
    }
)


class EdgeMiddleware:
    """Pure ASGI middleware; see the module docstring. Nested copies (API inside the Reflex app) run once."""

    def __init__(self, app: ASGIApp, *, build_dir: Path | None = None) -> None:
        self.app = app
        self.build_dir = build_dir or web_build_dir()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        if kind not in ("http", "websocket") or scope.get(_SCOPE_MARK):
            await self.app(scope, receive, send)
            return
        scope[_SCOPE_MARK] = True
        settings = get_settings()
        headers = _headers(scope)
        if kind == "websocket":
            await self._websocket(scope, receive, send, settings, headers)
        else:
            await self._http(scope, receive, send, settings, headers)

    async def _websocket(
        self, scope: Scope, receive: Receive, send: Send, settings: Settings, headers: dict[bytes, bytes]
    ) -> None:
        origin = headers.get(b"origin")
        if origin is not None and not origin_allowed(origin.decode("latin-1"), scope, settings):
            # Closing before accepting makes the server answer the handshake with 403.
            await send({"type": "websocket.close", "code": 1008})
            return
        await self.app(scope, receive, send)

    async def _http(
        self, scope: Scope, receive: Receive, send: Send, settings: Settings, headers: dict[bytes, bytes]
    ) -> None:
        path: str = scope.get("path") or "/"
        method: str = scope.get("method", "GET").upper()
        raw_origin = headers.get(b"origin")
        origin = normalize_origin(raw_origin.decode("latin-1")) if raw_origin is not None else None
        own = own_origin(scope, settings, headers)
        same_origin = origin is not None and origin == own
        cors_origin = origin if origin is not None and is_configured_origin(origin, settings) else None
        trusted_origin = same_origin or cors_origin is not None
        extra = self._security_headers(scope, settings, headers, path)

        # Cross-site state changes: /auth/* and anything carrying the session cookie.
        if method not in SAFE_METHODS and (path.startswith("/auth/") or carries_session_cookie(headers, settings)):
            source = _request_source(headers)
            if source is None or not (source == own or is_configured_origin(source, settings)):
                await self._refuse(send, extra)
                return
        # The event socket's HTTP side (polling handshakes) from a foreign page.
        if (path == EVENT_PATH or path.startswith(EVENT_PATH + "/")) and raw_origin is not None and not trusted_origin:
            await self._refuse(send, extra)
            return
        # CORS preflight.
        if method == "OPTIONS" and raw_origin is not None and b"access-control-request-method" in headers:
            if cors_origin is None:
                await self._refuse(send, extra, detail="Cross-origin request refused.")
                return
            await self._preflight(send, extra, cors_origin, headers)
            return

        cors = _cors_headers(cors_origin)
        docs = path in DOCS_PATHS and method in ("GET", "HEAD")
        buffered: list[Message] = []

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = message.get("headers") or []
                policy = cache_policy(path, int(message.get("status", 200)), _content_type(raw))
                message["headers"] = _rewrite(raw, extra, cors, cache_control=policy)
                if docs:
                    buffered.append(message)
                    return
            elif message["type"] == "http.response.body" and docs and buffered:
                buffered.append(message)
                if message.get("more_body"):
                    return
                await _send_docs(send, buffered)
                buffered.clear()
                return
            await send(message)

        await self.app(scope, receive, send_wrapper)

    def _security_headers(
        self, scope: Scope, settings: Settings, headers: dict[bytes, bytes], path: str
    ) -> list[tuple[bytes, bytes]]:
        out = [
            (b"content-security-policy", _page_csp_header(self.build_dir, stripe_in_browser(settings))),
            (b"x-frame-options", b"DENY"),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"strict-origin-when-cross-origin"),
            (b"permissions-policy", PERMISSIONS_POLICY.encode("latin-1")),
            (b"cross-origin-opener-policy", b"same-origin"),
            # Blank rather than absent: granian adds its own banner when the app sends none.
            (b"server", b""),
        ]
        if settings.hsts_max_age_seconds and (
            is_https(scope, settings, headers) or settings.public_url.lower().startswith("https://")
        ):
            out.append((b"strict-transport-security", f"max-age={settings.hsts_max_age_seconds}".encode()))
        return out

    async def _refuse(self, send: Send, extra: list[tuple[bytes, bytes]], *, detail: str = REFUSED_DETAIL) -> None:
        body = json.dumps({"detail": detail, "code": "cross_site_refused"}).encode()
        headers = _rewrite(
            [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            extra,
            [],
        )
        await send({"type": "http.response.start", "status": 403, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _preflight(
        self, send: Send, extra: list[tuple[bytes, bytes]], origin: str, headers: dict[bytes, bytes]
    ) -> None:
        allow = [
            *_cors_headers(origin),
            (b"access-control-allow-methods", b"GET, POST, PUT, PATCH, DELETE, OPTIONS"),
            (b"access-control-max-age", b"600"),
        ]
        requested = headers.get(b"access-control-request-headers")
        if requested:
            allow.append((b"access-control-allow-headers", requested))
        out = _rewrite([(b"content-length", b"0")], extra, allow)
        await send({"type": "http.response.start", "status": 204, "headers": out})
        await send({"type": "http.response.body", "body": b""})


def _cors_headers(origin: str | None) -> list[tuple[bytes, bytes]]:
    if origin is None:
        return []
    return [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"access-control-allow-credentials", b"true"),
    ]


def cache_policy(path: str, status: int, content_type: str) -> bytes:
    """The Cache-Control of a response: immutable for a hashed build asset, no-cache for a compiled page's HTML,
    no-store for anything else (API answers can carry patient data)."""
    if status == 200 and path.startswith(CACHEABLE_PREFIXES) and _HASHED_NAME.search(path):
        return IMMUTABLE
    if content_type.startswith("text/html") and not path.startswith(_DYNAMIC_PREFIXES) and path not in DOCS_PATHS:
        return REVALIDATE
    return NO_STORE


def _content_type(headers: Iterable[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if bytes(name).lower() == b"content-type":
            return bytes(value).decode("latin-1").strip().lower()
    return ""


def _rewrite(
    headers: Iterable[tuple[bytes, bytes]],
    extra: list[tuple[bytes, bytes]],
    cors: list[tuple[bytes, bytes]],
    *,
    cache_control: bytes = NO_STORE,
) -> list[tuple[bytes, bytes]]:
    """Drop the inner app's banner, security, CORS and caching headers; add ours, with `cache_control`."""
    out: list[tuple[bytes, bytes]] = []
    vary: list[str] = []
    for name, value in headers:
        key = bytes(name).lower()
        if key in _STRIPPED or key.startswith(b"access-control-"):
            continue
        if key == b"vary":
            vary.extend(v.strip() for v in bytes(value).decode("latin-1").split(",") if v.strip())
            continue
        if key in (b"cache-control", b"pragma", b"expires"):
            continue
        out.append((bytes(name), bytes(value)))
    out.extend(extra)
    out.extend(cors)
    out.append((b"cache-control", cache_control))
    if "origin" not in {v.lower() for v in vary}:
        vary.append("Origin")
    out.append((b"vary", ", ".join(dict.fromkeys(vary)).encode("latin-1")))
    return out


async def _send_docs(send: Send, messages: list[Message]) -> None:
    """Swagger UI's page: its own CSP, with the hashes of the inline scripts FastAPI generated for it."""
    start, bodies = messages[0], messages[1:]
    html = b"".join(bytes(m.get("body", b"")) for m in bodies)
    csp = docs_csp(inline_script_hashes(html)).encode("latin-1")
    start["headers"] = [(k, csp if k == b"content-security-policy" else v) for k, v in start["headers"]]
    await send(start)
    await send({"type": "http.response.body", "body": html})


def edge_transformer(app: ASGIApp) -> ASGIApp:
    """For rx.App(api_transformer=[...]): wrap an ASGI app with the edge middleware."""
    return EdgeMiddleware(app)


def install_edge(api: Any) -> None:
    """Install the middleware on a Starlette/FastAPI app (the standalone REST API)."""
    api.add_middleware(EdgeMiddleware)
