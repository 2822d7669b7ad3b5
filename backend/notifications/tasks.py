"""Celery tasks of the notification outbox. Tasks carry a notification id only (never PHI); the delivery
ledger makes a redelivered task (acks_late, a worker lost mid-send) a no-op or a reconciliation."""

from __future__ import annotations

import logging
import uuid

from backend.celery_app import DB_RETRY_MAX, celery_app, database_unavailable, db_retry_delay
from backend.notifications import delivery, reminders

logger = logging.getLogger(__name__)


# A row deferred by the throttle (or a task that came early) is asked for again when it is due, if that is this
# soon; later ones are the sweep's. (A broker holds a countdown task unacknowledged: keep it well inside the
# Redis transport's one-hour visibility timeout.)
REQUEUE_WITHIN_SECONDS = 600.0


@celery_app.task(name="notifications.deliver", bind=True, max_retries=None)
def deliver_notification(self: object, notification_id: str) -> str:
    """Deliver one outbox row (at most once). A throttled row comes back at the slot reserved for it."""
    try:
        outcome = delivery.deliver(uuid.UUID(notification_id))
    except Exception as exc:
        request = self.request  # type: ignore[attr-defined]
        if request.is_eager or not database_unavailable(exc):
            raise
        # The database is down or restarting: ask again later (the ledger makes a second try safe; past the last
        # retry the outbox sweep still finds the row).
        retries = request.retries
        logger.warning("database unavailable for notification %s: retry %d", notification_id, retries + 1)
        raise self.retry(  # type: ignore[attr-defined]
            exc=exc, countdown=db_retry_delay(retries), max_retries=DB_RETRY_MAX
        ) from exc
    if outcome in ("throttled", "not due") and not celery_app.conf.task_always_eager:
        wait = delivery.due_in(uuid.UUID(notification_id))
        if wait is not None and wait <= REQUEUE_WITHIN_SECONDS:
            deliver_notification.apply_async((notification_id,), countdown=wait + 0.01)
    return outcome


@celery_app.task(name="notifications.sweep_outbox_tick")
def sweep_outbox_tick() -> dict[str, int]:
    """Every NOTIFICATIONS_SWEEP_SECONDS (default 30 s): deliver due rows a lost enqueue or a retry left
    behind; reconcile rows a dead worker left 'sending'. Claims use SKIP LOCKED, so overlapping sweeps (and
    tasks) never take one row twice."""
    total: dict[str, int] = {}
    for _ in range(10):  # bounded: at most 10 batches per tick
        counts = delivery.sweep()
        for key, value in counts.items():
            total[key] = total.get(key, 0) + value
        if sum(counts.values()) < delivery.SWEEP_BATCH:
            break
    return total


@celery_app.task(name="notifications.send_reminders_tick")
def send_reminders_tick() -> int:
    """Every minute: send the appointment reminders that are due, each at most once (the reminder rows are the
    guard, written with the outbox rows in one transaction per practice)."""
    return reminders.send_due_reminders()
