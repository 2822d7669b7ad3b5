"""The Celery app. With no broker configured, tasks run in-process (the embedded default).

Start a worker:  celery -A backend.worker worker -l info
Start beat:      celery -A backend.worker beat -l info
"""

from __future__ import annotations

from celery import Celery

from backend.settings import get_settings


def make_celery() -> Celery:
    """Create the Celery app from settings."""
    settings = get_settings()
    app = Celery("clinic")
    broker = settings.broker_url
    app.conf.update(
        broker_url=broker or "memory://",
        task_always_eager=broker is None,
        task_eager_propagates=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        result_backend=None,
        task_ignore_result=True,
        timezone="UTC",
        enable_utc=True,
        broker_connection_retry_on_startup=True,
        beat_schedule={},
    )
    return app


celery_app = make_celery()


@celery_app.task(name="clinic.ping")
def ping() -> str:
    """Answer 'pong' (used by readiness checks and tests of the worker wiring)."""
    return "pong"
