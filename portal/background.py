"""Scheduled work when no broker is configured: the beat schedule runs inside the Reflex backend."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import reflex as rx

from backend.settings import get_settings
from backend.worker import run_schedule_in_process


async def run_schedule_without_broker(app: Any = None) -> None:
    """Lifespan task: in the embedded mode, expire offers and entries and sweep freed slots in-process."""
    if get_settings().broker_url is not None and not get_settings().celery_eager:
        return  # a real worker and beat do this work
    stop = threading.Event()
    try:
        await asyncio.to_thread(run_schedule_in_process, stop)
    finally:
        stop.set()


def register(app: rx.App) -> None:
    """Start the in-process schedule with the app (call once, where the app is created)."""
    app.register_lifespan_task(run_schedule_without_broker)
