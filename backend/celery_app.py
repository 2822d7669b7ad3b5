"""The bare Celery app: settings, and the tasks' retry policy for a database outage. With no broker configured,
tasks run in-process (the embedded default).

Task modules register their tasks on this app (`@celery_app.task`); this module imports none of them, so any
module may import it. The worker entry point (backend.worker) adds the beat schedule and loads the task
modules; domain code asks for work by task name through backend.jobs.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from backend.settings import get_settings

# The modules that define tasks, by name: the worker imports them at start-up (`include`), backend.jobs before
# it runs a task in-process.
TASK_MODULES = (
    "backend.waitlist.tasks",
    "backend.waitlist.preview_tasks",
    "backend.notifications.tasks",
    "backend.payments.tasks",
    "backend.scheduling.tasks",
)


def celery_config() -> dict[str, Any]:
    """The app's configuration, from settings."""
    settings = get_settings()
    broker = settings.broker_url
    return {
        "broker_url": broker or "memory://",
        "task_always_eager": broker is None or settings.celery_eager,
        "task_default_queue": settings.celery_queue,
        "task_eager_propagates": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_backend": None,
        "task_ignore_result": True,
        "timezone": "UTC",
        "enable_utc": True,
        "broker_connection_retry_on_startup": True,
        "include": list(TASK_MODULES),
    }


def make_celery() -> Celery:
    """Create the Celery app. Its configuration is read from settings when first needed, not at import: domain
    modules import this one, and a test or a script may still be choosing its settings then."""
    app = Celery("clinic")
    app.add_defaults(celery_config)
    return app


# A task that finds the database down (restarting, failed over, out of connections) is tried again with a
# growing delay (1, 2, 4 ... 60 s): about ten minutes in all before it gives up (the beat sweeps still catch it).
DB_RETRY_MAX = 14
DB_RETRY_MAX_DELAY = 60


def database_unavailable(exc: BaseException) -> bool:
    """True when `exc` says the database cannot be reached right now (worth a retry), not that a query is wrong."""
    from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    if isinstance(exc, OperationalError | DisconnectionError | PoolTimeout):
        return True
    if isinstance(exc, DBAPIError):
        code = str(getattr(exc.orig, "sqlstate", None) or "")
        return exc.connection_invalidated or code[:2] in {"08", "57", "53"}
    try:
        import psycopg
    except ImportError:  # pragma: no cover - SQLite-only installs
        return False
    return isinstance(exc, psycopg.OperationalError)


def db_retry_delay(retries: int) -> int:
    """Seconds before retry number `retries` + 1: exponential, capped."""
    return int(min(2 ** min(retries, 10), DB_RETRY_MAX_DELAY))


celery_app = make_celery()
