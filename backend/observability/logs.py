"""Request ids and the ids of who is acting, on every log line of a request, a Reflex event and a Celery task.

- Every HTTP request gets a request id: the client's `X-Request-ID` when it is a safe token (at most 64 of
  [A-Za-z0-9._-]), else a new one. It is bound for the request (structlog contextvars), echoed on the response,
  and the request ends with one access line: method, route template (never the raw path), status, duration.
- Once the actor is known (backend.api.deps, portal's session), `bind_actor` adds practice_id and actor_id:
  ids only, never a name or an address.
- A task enqueued while a request id is bound carries it in a message header; the worker binds it again for
  the task's run (`install_task_propagation`), so the task's log lines name the request that caused it.

Everything here is ids and route words: no health data.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import MutableMapping
from contextvars import ContextVar
from typing import Any

import structlog
from starlette.datastructures import MutableHeaders
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.observability import sentry
from backend.observability.redaction import redact_url

REQUEST_ID_HEADER = "X-Request-ID"
# The Celery message header that carries the request id from the publisher to the worker.
TASK_HEADER = "waitwell_request_id"
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_SCOPE_KEY = "waitwell.request_id"

access_log = structlog.get_logger("backend.access")

# Ids learnt after the request started (the actor, in a dependency that FastAPI runs in a worker thread with a copy
# of the context): one mutable dict per request, shared by every copy, so later lines and the access line see them.
_late_fields: ContextVar[dict[str, str] | None] = ContextVar("waitwell_late_log_fields", default=None)


def new_request_id() -> str:
    """A fresh request id (32 hex characters)."""
    return secrets.token_hex(16)


def accept_request_id(value: str | bytes | None) -> str:
    """The client's request id if it is a safe token, else a new one (an unsafe one is never logged)."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if value and _SAFE_REQUEST_ID.match(value):
        return value
    return new_request_id()


def current_request_id() -> str | None:
    """The request id bound in this context, if any."""
    value = structlog.contextvars.get_contextvars().get("request_id")
    return value if isinstance(value, str) else None


def bind_actor(actor: Any) -> None:
    """Add the acting account's ids (practice, user, role) to this request's, event's or task's log lines."""
    fields = {"practice_id": str(actor.tenant_id), "actor_role": str(actor.role)}
    if getattr(actor, "user_id", None) is not None:
        fields["actor_id"] = str(actor.user_id)
    structlog.contextvars.bind_contextvars(**fields)
    late = _late_fields.get()
    if late is not None:
        late.update(fields)


def merge_late_fields(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: the ids bound in another copy of this request's context (see `_late_fields`)."""
    late = _late_fields.get()
    if late:
        for key, value in late.items():
            event_dict.setdefault(key, value)
    return event_dict


def route_template(scope: Scope) -> str:
    """The route that served the request, as declared (/api/v1/waitlists/{waitlist_id}), never the raw path.
    A mounted app (the Reflex pages, static files) without a route of its own: the path with anything that is not
    a route word or an id redacted (backend.observability.redaction.redact_url)."""
    route = scope.get("route")
    if isinstance(route, Route):
        return route.path
    if isinstance(route, Mount) or route is None:
        return str(redact_url(scope.get("path") or "/"))
    return "<unmatched>"


class RequestLogMiddleware:
    """Pure ASGI middleware: request id in, request id out, one access line per HTTP request. Nested copies (the
    API inside the Reflex app) run once: the outermost one does the work."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get(_SCOPE_KEY):
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(b"x-request-id")
        request_id = accept_request_id(incoming)
        scope[_SCOPE_KEY] = request_id
        tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
        sentry.tag(request_id=request_id)
        late_token = _late_fields.set({})
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message.get("status", 200))
                message["headers"] = list(message.get("headers") or [])  # MutableHeaders edits a list in place
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            sentry.tag(**(_late_fields.get() or {}))  # this request's isolation scope (Sentry's ASGI middleware)
            access_log.info(
                "request",
                method=scope.get("method"),
                route=route_template(scope),
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 1),
            )
            _late_fields.reset(late_token)
            structlog.contextvars.reset_contextvars(**tokens)


def install_request_logging(app: Any) -> None:
    """Put RequestLogMiddleware outermost on a Starlette/FastAPI app: outside its error middleware too, so a 500
    answered by the app's catch-all handler still carries the request id and gets its access line."""
    build = app.build_middleware_stack

    def build_with_request_ids() -> ASGIApp:
        return RequestLogMiddleware(build())

    app.build_middleware_stack = build_with_request_ids


def request_log_transformer(app: ASGIApp) -> ASGIApp:
    """For the Reflex app: wrap a finished ASGI app (so the edge's own refusals get a request id too)."""
    return RequestLogMiddleware(app)


# --- Celery: from the request that enqueued a task to the task's run -------------------------------------------


def _before_publish(headers: dict[str, Any] | None = None, **_kwargs: Any) -> None:
    request_id = current_request_id()
    if request_id is not None and headers is not None:
        headers.setdefault(TASK_HEADER, request_id)


def _task_request_id(task: Any) -> str | None:
    request = getattr(task, "request", None)
    value = getattr(request, TASK_HEADER, None)
    if value is None:
        headers = getattr(request, "headers", None) or {}
        value = headers.get(TASK_HEADER) if isinstance(headers, dict) else None
    return value if isinstance(value, str) and _SAFE_REQUEST_ID.match(value) else None


# Per running task: the structlog tokens to restore when it ends. An eager task runs inside the request that
# called it: it keeps that request's id and hands the request its context back unchanged.
_task_tokens: dict[str, Any] = {}


def _task_prerun(task_id: str | None = None, task: Any = None, **_kwargs: Any) -> None:
    request_id = _task_request_id(task) or current_request_id() or new_request_id()
    fields = {"request_id": request_id, "task": getattr(task, "name", None), "task_id": task_id}
    _task_tokens[str(task_id)] = structlog.contextvars.bind_contextvars(**fields)
    sentry.tag(request_id=request_id)


def _task_postrun(task_id: str | None = None, **_kwargs: Any) -> None:
    tokens = _task_tokens.pop(str(task_id), None)
    if tokens is not None:
        try:
            structlog.contextvars.reset_contextvars(**tokens)
        except ValueError:  # ended in another context than it started (should not happen): just unbind
            structlog.contextvars.unbind_contextvars(*tokens)


_propagating = False


def install_task_propagation() -> None:
    """Carry the request id from publisher to task (every process: the API publishes, the worker runs)."""
    global _propagating
    if _propagating:
        return
    _propagating = True
    from celery.signals import before_task_publish, task_postrun, task_prerun

    before_task_publish.connect(_before_publish, weak=False)
    task_prerun.connect(_task_prerun, weak=False)
    task_postrun.connect(_task_postrun, weak=False)
