"""Celery tasks of the payments ledger. Tasks carry ids only; the ledger row's lease and idempotency key make a
redelivered task (acks_late, a worker lost mid-charge) a no-op or the same charge asked for again."""

from __future__ import annotations

import uuid

from backend.celery_app import celery_app
from backend.payments import charges


@celery_app.task(name="payments.charge")
def charge_payment(tenant_id: str, payment_id: str) -> str:
    """Charge one ledger row if it is due (at most once: backend.payments.charges)."""
    return charges.charge(uuid.UUID(tenant_id), uuid.UUID(payment_id))


@celery_app.task(name="payments.sweep_tick")
def sweep_tick() -> dict[str, int]:
    """Every PAYMENTS_SWEEP_SECONDS: charge rows a lost enqueue or a dead worker left behind, and due retries."""
    return charges.sweep()
