"""Celery tasks of scheduling: compute again the stored next free slots that changes marked stale (ids only)."""

from __future__ import annotations

import logging
import uuid

from backend.celery_app import celery_app, database_unavailable
from backend.scheduling import next_free, search
from backend.types import utcnow

logger = logging.getLogger(__name__)

# Providers computed per tick at most (a few milliseconds each); the rest wait for the next tick or a search.
SWEEP_BATCH = 500


@celery_app.task(name=next_free.REFRESH_TASK)
def refresh_next_free_task(tenant_id: str, provider_ids: list[str]) -> int:
    """Compute the next free slots of these providers of one practice that are not current; returns how many.

    Nothing is lost when this fails or never runs: the next search computes what it finds stale."""
    try:
        return search.refresh_next_free(uuid.UUID(tenant_id), [uuid.UUID(p) for p in provider_ids])
    except Exception as exc:
        if not database_unavailable(exc):
            raise
        logger.warning("database unavailable: next free slots left to the next search")
        return 0


@celery_app.task(name=next_free.SWEEP_TASK)
def refresh_next_free_tick() -> int:
    """For beat: compute the stored next free slots that changes marked since, or whose time ran out, every
    practice; returns how many. A practice that fails is logged and left to the next tick (and to its searches)."""
    total = 0
    for tenant_id, provider_ids in next_free.marked(SWEEP_BATCH, now=utcnow()).items():
        try:
            total += search.refresh_next_free(tenant_id, provider_ids)
        except Exception:
            logger.exception("refreshing next free slots of tenant %s failed", tenant_id)
    return total
