"""Optional error tracking with the Sentry SDK (or any Sentry-compatible server, e.g. GlitchTip): off unless
SENTRY_DSN is set. Every process starts it through backend.logging_config.configure_logging().

What leaves the process is what backend.logging_config lets into a log line, and less:
- no personal data by the SDK's own rules (`send_default_pii=False`), no local variables, no request bodies;
- `scrub_event` runs last on every event: the request keeps its method and its URL without query string or
  free-text segments, and no body, query, cookies or headers but a few harmless ones; each exception keeps its
  type, module and frames (file, function, line, source line) and loses its message ("<message redacted>");
  log messages keep their template, not their arguments (a log line's own text is already free of health data,
  tests/security/test_no_phi_in_logs.py); breadcrumbs keep no data but a redacted URL; Celery
  task arguments are dropped. Tags add the request id, practice id and actor id bound for the work.
"""

from __future__ import annotations

import logging
from typing import Any

from backend.observability.redaction import REDACTED, redact_url
from backend.settings import LogSettings

logger = logging.getLogger(__name__)

# Request headers an event may keep (everything else, Authorization and Cookie first, is dropped).
_KEPT_HEADERS = frozenset({"accept", "content-type", "content-length", "host", "user-agent", "x-request-id"})
_ID_TAGS = ("request_id", "practice_id", "actor_id", "actor_role", "task", "task_id")
_started_with: str | None = None


def _scrub_frames(holder: dict[str, Any] | None) -> None:
    frames = ((holder or {}).get("stacktrace") or {}).get("frames") or []
    for frame in frames:
        frame.pop("vars", None)


def _scrub_request(request: dict[str, Any]) -> dict[str, Any]:
    headers = request.get("headers") or {}
    if isinstance(headers, dict):
        kept_headers = {k: v for k, v in headers.items() if k.lower() in _KEPT_HEADERS}
    else:  # a list of pairs
        kept_headers = {k: v for k, v in headers if str(k).lower() in _KEPT_HEADERS}
    kept: dict[str, Any] = {"method": request.get("method"), "headers": kept_headers}
    if request.get("url"):
        kept["url"] = redact_url(request["url"])
    return kept


def scrub_event(event: dict[str, Any], _hint: dict[str, Any] | None = None) -> dict[str, Any]:
    """Make one event safe to send (see the module docstring). Used as `before_send`."""
    if isinstance(event.get("request"), dict):
        event["request"] = _scrub_request(event["request"])
    for exception in (event.get("exception") or {}).get("values") or []:
        if exception.get("value"):
            exception["value"] = REDACTED
        _scrub_frames(exception)
    for thread in (event.get("threads") or {}).get("values") or []:
        _scrub_frames(thread)
    logentry = event.get("logentry")
    if isinstance(logentry, dict):
        event["logentry"] = {"message": logentry.get("message")}
    if isinstance(event.get("message"), str) and isinstance(logentry, dict) and logentry.get("params"):
        event["message"] = logentry.get("message")
    crumbs = event.get("breadcrumbs")
    values = crumbs.get("values") if isinstance(crumbs, dict) else crumbs
    for crumb in values or []:
        data = crumb.get("data") or {}
        crumb["data"] = {"url": redact_url(data["url"])} if data.get("url") else {}
    extra = event.get("extra")
    if isinstance(extra, dict):
        job = extra.get("celery-job")
        if isinstance(job, dict):
            extra["celery-job"] = {"task_name": job.get("task_name")}
        extra.pop("sys.argv", None)
    event.pop("user", None)
    tags = event.setdefault("tags", {})
    if isinstance(tags, dict):
        import structlog

        bound = structlog.contextvars.get_contextvars()
        for key in _ID_TAGS:
            if isinstance(bound.get(key), str):
                tags.setdefault(key, bound[key])
    return event


def _before_send(event: Any, hint: Any) -> Any:
    return scrub_event(event, hint)  # the SDK's Event is a TypedDict; scrub_event works on plain dicts


def tag(**ids: str) -> None:
    """Name the request, practice and actor (ids only) on the error events of this HTTP request or Celery task.
    Only there: Sentry gives each of them a scope of its own (a Reflex event has none, and tags set there would
    stay on the process's scope); elsewhere `scrub_event` adds the ids bound at the time of the event."""
    if _started_with is None:
        return
    import sentry_sdk

    sentry_sdk.set_tags(ids)


def init_sentry(settings: LogSettings | None = None) -> bool:
    """Start error tracking if SENTRY_DSN is set (once per process); True when it is on."""
    global _started_with
    settings = settings or LogSettings()
    dsn = settings.sentry_dsn
    if not dsn:
        return False
    if _started_with == dsn:
        return True
    import sentry_sdk

    sentry_sdk.init(
        dsn=dsn,
        environment=settings.sentry_environment,
        send_default_pii=False,
        include_local_variables=False,
        max_request_body_size="never",
        before_send=_before_send,
        traces_sample_rate=None,
    )
    _started_with = dsn
    logger.info("error tracking on")
    return True
