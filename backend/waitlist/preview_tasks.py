"""The Celery task of the policy preview (backend/waitlist/preview.py): ids only in the message; the job's settings
wait in the job store under the practice's key."""

from __future__ import annotations

import uuid

from backend.celery_app import celery_app
from backend.waitlist.preview import TASK, run_preview


@celery_app.task(name=TASK, soft_time_limit=240, time_limit=300)
def preview_policy_task(tenant_id: str, job_id: str) -> None:
    """Replay the practice's last weeks under its policy and under the proposed one; store progress and figures."""
    run_preview(uuid.UUID(tenant_id), uuid.UUID(job_id))
