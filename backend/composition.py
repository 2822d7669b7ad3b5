"""The composition point: which packages react, inside the transaction, to the domain events others record.

The domain packages (scheduling, waitlist, tenancy) only record events (backend.events.emit) and know nothing
of who listens. Every entry point calls `install()` before it serves: the REST API (backend.api.app, which the
Reflex server mounts), the Celery worker (backend.worker), the benchmarks and the test suite. Without it a
change still commits, but no notice is written for it.
"""

from __future__ import annotations

from backend.notifications import subscriber
from backend.payments import subscriber as payments_subscriber


def install() -> None:
    """Subscribe the notifications and payments packages to the domain events (idempotent)."""
    subscriber.register()
    payments_subscriber.register()
