"""The audit trail: one row per state change, written in the change's own transaction."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field

from backend.tenancy.models import TenantMixin
from backend.types import JSONType, UTCDateTime, new_id, utcnow


class AuditEvent(TenantMixin, table=True):
    __tablename__ = "audit_events"
    __table_args__ = (
        sa.Index("ix_audit_events_tenant_time", "tenant_id", "occurred_at"),
        sa.Index("ix_audit_events_entity", "tenant_id", "entity_type", "entity_id"),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    occurred_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    actor_user_id: uuid.UUID | None = Field(default=None)
    actor_role: str = Field(max_length=20)
    action: str = Field(max_length=80)
    entity_type: str = Field(max_length=40)
    entity_id: uuid.UUID | None = Field(default=None)
    # Ids and changed field names only: no free text that could carry PHI.
    data: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)
