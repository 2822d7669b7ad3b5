"""Celery tasks of the notification outbox. Tasks carry a notification id only (never PHI); the delivery
ledger makes a redelivered task (acks_late, a worker lost mid-send) a no-op or a reconciliation."""

from __future__ import annotations

import logging
import uuid

from backend.notifications import delivery, reminders
from backend.worker import celery_app

logger = logging.getLogger(__name__)


@celery_app.task(name="notifications.deliver", bind=True, max_retries=None)
def deliver_notification(self: object, notification_id: str) -> str:
    """Deliver one outbox row (at most once). A throttled row is tried again in a moment."""
    outcome = delivery.deliver(uuid.UUID(notification_id))
    if outcome == "throttled" and not celery_app.conf.task_always_eager:
        deliver_notification.apply_async((notification_id,), countdown=delivery.THROTTLE_DELAY_SECONDS * 2)
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
