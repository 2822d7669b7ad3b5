"""The worker's entry point: the bare Celery app (backend.celery_app) with the beat schedule, the log redaction
and every task module loaded. With no broker configured, tasks run in-process (the embedded default).

Start a worker:  celery -A backend.worker worker -l info
Start beat:      celery -A backend.worker beat -l info
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from celery.signals import setup_logging

import backend.notifications.tasks
import backend.payments.tasks
import backend.waitlist.tasks  # noqa: F401 - the worker runs every task: register them all
from backend import composition
from backend.celery_app import (
    DB_RETRY_MAX,
    DB_RETRY_MAX_DELAY,
    celery_app,
    database_unavailable,
    db_retry_delay,
    make_celery,
)
from backend.logging_config import configure_logging
from backend.observability import metrics
from backend.settings import get_settings

# The tasks change the domain; the notices their domain events cause are written by the notifications subscriber.
composition.install()
# Task outcomes, run and queue times (Celery signals); bookings and offers from the domain events the tasks record.
metrics.install_celery_metrics()
metrics.install_event_metrics()

__all__ = [
    "BEAT_SCHEDULE",
    "DB_RETRY_MAX",
    "DB_RETRY_MAX_DELAY",
    "beat_heartbeat",
    "celery_app",
    "database_unavailable",
    "db_retry_delay",
    "make_celery",
    "ping",
    "run_schedule_in_process",
]

# Periodic work (celery -A backend.worker beat, or worker -B). `expires` drops ticks a busy worker could not
# start in time: the next one does the same work.
BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "waitlist-expire-offers": {
        "task": "waitlist.expire_offers_tick",
        "schedule": 5.0,
        "options": {"expires": 5.0},
    },
    "waitlist-offer-open-slots": {
        "task": "waitlist.offer_open_slots_tick",
        "schedule": 30.0,
        "options": {"expires": 30.0},
    },
    "waitlist-expire-entries": {
        "task": "waitlist.expire_entries_tick",
        "schedule": 600.0,
        "options": {"expires": 600.0},
    },
    "waitlist-reconcile-counters": {
        "task": "waitlist.reconcile_counters_tick",
        "schedule": 900.0,
        "options": {"expires": 900.0},
    },
    "notifications-sweep-outbox": {
        "task": "notifications.sweep_outbox_tick",
        "schedule": get_settings().notifications_sweep_seconds,
        "options": {"expires": get_settings().notifications_sweep_seconds},
    },
    "notifications-send-reminders": {
        "task": "notifications.send_reminders_tick",
        "schedule": 60.0,
        "options": {"expires": 60.0},
    },
    "payments-sweep": {
        "task": "payments.sweep_tick",
        "schedule": get_settings().payments_sweep_seconds,
        "options": {"expires": get_settings().payments_sweep_seconds},
    },
    # Each provider's next free slot (backend/scheduling/next_free.py): rows changes marked, or that went stale by
    # time, computed again before a search needs them.
    "scheduling-refresh-next-free": {
        "task": "scheduling.refresh_next_free_tick",
        "schedule": 10.0,
        "options": {"expires": 10.0},
    },
    # Proves beat runs: waitwell_beat_heartbeat_timestamp_seconds (alert WaitwellBeatNotRunning past 5 minutes).
    "ops-beat-heartbeat": {
        "task": "ops.beat_heartbeat",
        "schedule": 30.0,
        "options": {"expires": 30.0},
    },
}


logger = logging.getLogger(__name__)
# No health data in the worker's logs either: the same redaction and JSON lines as the API, request ids carried
# into tasks, error tracking if configured (backend.logging_config).
configure_logging()


@setup_logging.connect
def _keep_our_logging(**_kwargs: Any) -> None:
    """Celery (worker and beat) configures logging only when nobody answers this signal: keep ours (LOG_LEVEL,
    LOG_FORMAT), so Celery's own lines are JSON lines with the rest."""
    configure_logging()


# Beat exactly once: a beat sends ticks only while it holds a Redis lock; a second one stands by (backend.beat_lock).
celery_app.add_defaults({"beat_schedule": BEAT_SCHEDULE, "beat_scheduler": "backend.beat_lock:LockedScheduler"})


@celery_app.task(name="clinic.ping")
def ping() -> str:
    """Answer 'pong' (used by readiness checks and tests of the worker wiring)."""
    return "pong"


@celery_app.task(name="ops.beat_heartbeat")
def beat_heartbeat() -> None:
    """Record that beat's schedule is running (read by the metrics scrape)."""
    metrics.record_beat_heartbeat()


def run_schedule_in_process(
    stop: threading.Event, *, tick_seconds: float = 1.0, clock: Callable[[], float] = time.monotonic
) -> None:
    """Embedded mode (no broker, no beat): run the beat schedule's tasks in this process until `stop`.

    Every tick is a conditional update over due rows, so several processes doing this at once (or this
    and a real beat) still advance each offer and entry exactly once."""
    # Every entry runs on the first tick. (Not 0.0: time.monotonic() counts from boot, so on a machine up for
    # less than an entry's period that entry would wait for the rest of it.)
    last_run = {name: -math.inf for name in BEAT_SCHEDULE}
    while not stop.wait(tick_seconds):
        now = clock()
        for name, entry in BEAT_SCHEDULE.items():
            if now - last_run[name] < float(entry["schedule"]):
                continue
            last_run[name] = now
            try:
                celery_app.tasks[entry["task"]].apply()
            except Exception:
                logger.exception("in-process %s failed", name)
