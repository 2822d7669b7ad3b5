"""Rate limiting for the REST API: a route dependency, the 429 response, and a small ASGI middleware.

Routes opt in with `dependencies=[rate_limit("booking")]` (or on their router). The dependency keys the limit by
the client address and, when the request carries a valid bearer token, by its practice. The middleware (installed
by `install_rate_limiting(app)`) adds the RateLimit-* headers to every allowed response of a limited route, and
limits the auth paths (/api/v1/auth/*, /auth/*) by path, so the auth router itself needs no change.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend import ratelimit
from backend.api.proxies import client_address
from backend.errors import AuthenticationFailed, RateLimited
from backend.identity.security import decode_access_token

STATE_KEY = "rate_limit"
AUTH_PATH_PREFIXES = ("/api/v1/auth/", "/auth/")
BROWSER_LOGIN_PATH = "/auth/login"


class RateLimitExceeded(Exception):
    def __init__(self, decision: ratelimit.Decision) -> None:
        super().__init__(decision.message)
        self.decision = decision


def too_many_requests(decision: ratelimit.Decision) -> JSONResponse:
    """429 {"detail": "Too many requests. Try again in N seconds.", "code": "rate_limited"} with Retry-After and
    RateLimit-*."""
    return JSONResponse(
        {"detail": decision.message, "code": RateLimited.code}, status_code=429, headers=decision.headers()
    )


def practice_of(authorization: str | None) -> str | None:
    """The practice (tenant id) of a valid bearer token, else None (the route itself answers 401)."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    try:
        return str(decode_access_token(token.strip())["tenant"])
    except AuthenticationFailed:
        return None


def rate_limit(limit_class: str) -> Any:
    """A dependency counting the request against `limit_class`; 429 when over the limit."""
    if limit_class not in ratelimit.LIMIT_CLASSES:
        raise ValueError(f"unknown rate limit class {limit_class!r}")

    # A plain function: FastAPI runs it in the thread pool, so the Redis round trips never block the loop.
    def _rate_limited(request: Request) -> None:
        route = getattr(request.scope.get("route"), "path", None)
        decision = ratelimit.check(
            limit_class,
            address=client_address(request.scope),
            practice=practice_of(request.headers.get("authorization")),
            route=route if isinstance(route, str) else "<unmatched>",
        )
        if decision is None:
            return
        if not decision.allowed:
            raise RateLimitExceeded(decision)
        request.state.rate_limit = decision

    return Depends(_rate_limited)


class RateLimitMiddleware:
    """Limits the auth paths, and puts the RateLimit-* headers on allowed responses of limited routes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        if path.startswith(AUTH_PATH_PREFIXES):
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            decision = await run_in_threadpool(
                ratelimit.check,
                ratelimit.AUTH,
                address=client_address(scope),
                practice=practice_of(headers.get("authorization")),
                # Not routed yet: the prefix, never the raw path (any path under it would make a series).
                route=next(prefix for prefix in AUTH_PATH_PREFIXES if path.startswith(prefix)) + "*",
            )
            if decision is not None and not decision.allowed:
                await _refusal(path, headers, decision)(scope, receive, send)
                return
            if decision is not None:
                scope.setdefault("state", {})[STATE_KEY] = decision

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                decision = scope.get("state", {}).get(STATE_KEY)
                if isinstance(decision, ratelimit.Decision) and decision.allowed:
                    raw = list(message.get("headers", []))
                    raw.extend(
                        (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in decision.headers().items()
                    )
                    message = {**message, "headers": raw}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _refusal(path: str, headers: dict[str, str], decision: ratelimit.Decision) -> Response:
    # The login form of the pages: back to the login page, which explains the wait, rather than raw JSON.
    if path == BROWSER_LOGIN_PATH and "text/html" in headers.get("accept", ""):
        query = urlencode({"error": "throttled", "retry": decision.retry_after})
        return RedirectResponse(f"/login?{query}", status_code=303, headers=decision.headers())
    return too_many_requests(decision)


def install_rate_limiting(app: FastAPI) -> None:
    """Register the 429 handler and the middleware on `app` (the routes carry their own `rate_limit` deps)."""

    async def _handler(_request: Request, exc: Exception) -> Response:
        if not isinstance(exc, RateLimitExceeded):  # pragma: no cover - registered for this type only
            raise exc
        return too_many_requests(exc.decision)

    app.add_exception_handler(RateLimitExceeded, _handler)
    app.add_middleware(RateLimitMiddleware)
