"""The audit trail: state changes (`audit_events`) and reads of patient data (`audit_access_events`).

Both tables are append-only (database triggers refuse UPDATE, DELETE and TRUNCATE) and hash-chained per practice,
in a few independent chains (shards): each row stores the previous row's hash in its chain and its own,
`row_hash = sha256(prev_hash || canonical content)` (see backend.audit.chain).
"""

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
        sa.Index("uq_audit_events_chain", "tenant_id", "chain_shard", "chain_seq", unique=True),
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
    # The row's chain (one of the practice's shards), its position, the previous row's hash and its own (assigned when
    # the row is flushed: backend.audit.chain).
    chain_shard: int = Field(default=0, sa_type=sa.SmallInteger, sa_column_kwargs={"server_default": "0"})
    chain_seq: int | None = Field(default=None, sa_type=sa.BigInteger, nullable=False)
    prev_hash: str | None = Field(default=None, max_length=64, nullable=False)
    row_hash: str | None = Field(default=None, max_length=64, nullable=False)


class AccessEvent(TenantMixin, table=True):
    """One read of patient data: one row per request or page load, naming every patient it showed."""

    __tablename__ = "audit_access_events"
    __table_args__ = (
        sa.Index("ix_audit_access_events_tenant_time", "tenant_id", "occurred_at"),
        sa.Index("ix_audit_access_events_actor", "tenant_id", "actor_user_id", "occurred_at"),
        sa.Index("uq_audit_access_events_chain", "tenant_id", "chain_shard", "chain_seq", unique=True),
    )

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    occurred_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    actor_user_id: uuid.UUID | None = Field(default=None)
    actor_role: str = Field(max_length=20)
    # What was read, e.g. "appointments.list"; further reads in the same request are folded into this row.
    action: str = Field(max_length=80)
    # The patients shown, as id strings, sorted.
    patient_ids: list[str] = Field(default_factory=list, sa_type=JSONType)
    patient_count: int = Field(default=0)
    # Through what: "GET /api/v1/appointments" or "page /admin/waitlists" (a live re-read: "live /admin/...").
    via: str = Field(default="", max_length=200)
    client_address: str | None = Field(default=None, max_length=64)
    chain_shard: int = Field(default=0, sa_type=sa.SmallInteger, sa_column_kwargs={"server_default": "0"})
    chain_seq: int | None = Field(default=None, sa_type=sa.BigInteger, nullable=False)
    prev_hash: str | None = Field(default=None, max_length=64, nullable=False)
    row_hash: str | None = Field(default=None, max_length=64, nullable=False)
