"""The one way domain code asks for background work: enqueue a Celery task by its name.

Domain modules never import task modules (the tasks import the domain, so that would be a circle). They name
the task instead; this module finds it on the bare app (backend.celery_app), loading the task modules by name
the first time, and sends it exactly as `task.delay(...)` / `task.apply_async(..., countdown=...)` would: to
the broker, or run in-process at once when the app is eager (no broker, or CELERY_EAGER=1).
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from backend.celery_app import TASK_MODULES, celery_app

if TYPE_CHECKING:
    from celery import Task

    from backend.db import UnitOfWork

logger = logging.getLogger(__name__)


def load_tasks() -> None:
    """Import every task module, so each task is registered on the app (the worker does it via `include`)."""
    for module in TASK_MODULES:
        importlib.import_module(module)


def task_named(name: str) -> Task:
    """The registered task called `name`; LookupError when there is none."""
    if name not in celery_app.tasks:
        load_tasks()
    try:
        return celery_app.tasks[name]
    except KeyError:
        raise LookupError(f"no Celery task is named {name!r}") from None


def enqueue(name: str, *args: Any, countdown: float | None = None, **kwargs: Any) -> None:
    """Send task `name` with ids-only arguments now (in-process and at once when eager); `countdown` delays it.
    Raises what the broker raises: callers that run after commit decide what a lost enqueue means."""
    task = task_named(name)
    if countdown is None:
        task.delay(*args, **kwargs)
    else:
        task.apply_async(args, kwargs, countdown=countdown)


def enqueue_after_commit(uow: UnitOfWork, name: str, *args: Any, **kwargs: Any) -> None:
    """Enqueue task `name` once `uow` commits (never for a rolled-back change). A failed enqueue is logged and
    left to the task's beat sweep; it never undoes the commit."""

    def send() -> None:
        try:
            enqueue(name, *args, **kwargs)
        except Exception:
            logger.exception("could not enqueue %s; its beat sweep will pick the work up", name)

    uow.after_commit(send)
