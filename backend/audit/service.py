"""Write and read the audit trail."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlmodel import col, select

from backend.audit.models import AuditEvent
from backend.db import UnitOfWork
from backend.service import require_role, service_function
from backend.tenancy.context import Actor, Role


def record(
    actor: Actor,
    uow: UnitOfWork,
    *,
    action: str,
    entity_type: str,
    entity_id: uuid.UUID | None,
    data: dict[str, Any] | None = None,
) -> AuditEvent:
    """Add an audit event to the current transaction (it commits or rolls back with the change)."""
    event = AuditEvent(
        tenant_id=actor.tenant_id,
        actor_user_id=actor.user_id,
        actor_role=str(actor.role),
        action=action,
        entity_type=entity_type,
        entity_id=entity_id,
        data=data or {},
    )
    uow.session.add(event)
    return event


@service_function
def list_audit_events(
    actor: Actor,
    uow: UnitOfWork,
    *,
    entity_type: str | None = None,
    entity_id: uuid.UUID | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> list[AuditEvent]:
    """List the tenant's audit events, newest first."""
    require_role(actor, Role.ADMIN)
    query = select(AuditEvent)
    if entity_type:
        query = query.where(AuditEvent.entity_type == entity_type)
    if entity_id:
        query = query.where(AuditEvent.entity_id == entity_id)
    if since:
        query = query.where(AuditEvent.occurred_at >= since)
    query = query.order_by(col(AuditEvent.occurred_at).desc()).limit(max(1, min(limit, 500)))
    return list(uow.session.exec(query))
