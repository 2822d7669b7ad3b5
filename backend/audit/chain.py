"""The hash chains over the audit tables: a few chains (shards) per practice and table, extended when rows are flushed.

Design
------
* Each row carries `chain_shard` (which of its practice's SHARDS chains it is in), `chain_seq` (1, 2, 3 ... per
  practice, table and shard), `prev_hash` (the previous row's `row_hash` in that chain, 64 zeros for the first) and
  `row_hash = sha256(prev_hash + "\\n" + canonical(row))`, where `canonical` is the row's content as compact JSON with
  sorted keys (`canonical_content`; the shard is not in it: a row moved to another shard breaks both chains' links).
  Changing, removing or re-ordering a row breaks its chain at that row, which `verify` reports.
* No fork: a transaction claims a shard under a transaction lock (PostgreSQL `pg_advisory_xact_lock(<table key> +
  shard, <tenant key>)`, through `audit_chain_claim`, which takes the lowest shard nobody holds and reads its head in
  one round trip; SQLite already has one writer at a time and uses shard 0), and a unique index on (tenant_id,
  chain_shard, chain_seq) has the last word. The lowest free shard is taken: one writer at a time keeps to shard 0,
  and only concurrent writers spread out. `audit.record` and `audit.record_access` keep their rows out of the
  session until `before_commit`, so the lock is taken in the commit's own final flush and held only until that
  commit. Several shards let concurrent writers of one practice commit side by side instead of one after another.
* Deleting the newest rows cannot be told from rows never written by the chain alone; operators anchor it by
  keeping the output of `python -m backend.audit verify` (it prints each chain's head hash) outside the database.
"""

from __future__ import annotations

import hashlib
import json
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlmodel import Session, col, select

from backend.audit.models import AccessEvent, AuditEvent

GENESIS = "0" * 64
CHAINED: tuple[type[AuditEvent] | type[AccessEvent], ...] = (AuditEvent, AccessEvent)
# Chains per practice and table: writers of one practice take different ones, so they do not queue (PostgreSQL).
SHARDS = 8
# The first key of the advisory lock: which table's chain, plus the shard (the second key is the practice).
_LOCK_CLASS = {AuditEvent: 0x57A1_0100, AccessEvent: 0x57A1_0200}
_HEADS_KEY = "audit.chain_heads"

Chained = AuditEvent | AccessEvent


def _iso(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def canonical_content(row: Chained) -> str:
    """The row's content as hashed: compact JSON, sorted keys, ids as strings, times in UTC to the microsecond."""
    content: dict[str, Any] = {
        "table": row.__tablename__,
        "id": _str(row.id),
        "tenant_id": _str(row.tenant_id),
        "chain_seq": row.chain_seq,
        "occurred_at": _iso(row.occurred_at),
        "actor_user_id": _str(row.actor_user_id),
        "actor_role": row.actor_role,
        "action": row.action,
    }
    if isinstance(row, AuditEvent):
        content.update(entity_type=row.entity_type, entity_id=_str(row.entity_id), data=row.data or {})
    else:
        content.update(
            patient_ids=list(row.patient_ids or []),
            patient_count=row.patient_count,
            via=row.via,
            client_address=row.client_address,
        )
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def row_hash(prev_hash: str, row: Chained) -> str:
    """sha256 over the previous hash and the row's canonical content."""
    return hashlib.sha256(f"{prev_hash}\n{canonical_content(row)}".encode()).hexdigest()


def _tenant_lock_key(tenant_id: uuid.UUID) -> int:
    # A signed 32-bit key from the tenant id (crc32 spreads UUIDs well; a collision only shares a lock).
    value = zlib.crc32(tenant_id.bytes)
    return value - 2**32 if value >= 2**31 else value


def _head(session: Session, model: type[Chained], tenant_id: uuid.UUID) -> tuple[int, int, str]:
    """This transaction's chain of the practice and table: (shard, last position, last hash); on PostgreSQL the shard
    stays locked for the rest of the transaction."""
    heads: dict[tuple[str, uuid.UUID], tuple[int, int, str]] = session.info.setdefault(_HEADS_KEY, {})
    key = (model.__tablename__, tenant_id)
    if key in heads:
        return heads[key]
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        shard, seq, last_hash = connection.execute(
            sa.text("SELECT shard, seq, hash FROM audit_chain_claim(:tbl, :cls, :tenant, :key, :first, :shards)"),
            {
                "tbl": model.__tablename__,
                "cls": _LOCK_CLASS[model],
                "tenant": tenant_id,
                "key": _tenant_lock_key(tenant_id),
                "first": 0,
                "shards": SHARDS,
            },
        ).one()
        heads[key] = (int(shard), int(seq), str(last_hash)) if seq is not None else (int(shard), 0, GENESIS)
        return heads[key]
    table: Any = getattr(model, "__table__")  # noqa: B009 - SQLModel classes are not typed with it
    last = connection.execute(
        sa.select(table.c.chain_seq, table.c.row_hash)
        .where(table.c.tenant_id == tenant_id, table.c.chain_shard == 0)
        .order_by(table.c.chain_seq.desc())
        .limit(1)
    ).first()
    heads[key] = (0, int(last[0]), str(last[1])) if last else (0, 0, GENESIS)
    return heads[key]


def seal(session: Session, rows: list[Chained]) -> None:
    """Give new rows their chain position and hashes, in the order they were added."""
    for row in rows:
        if row.tenant_id is None:
            continue  # refused by the tenant stamp in the same flush
        shard, seq, prev = _head(session, type(row), row.tenant_id)
        row.chain_shard = shard
        row.chain_seq = seq + 1
        row.prev_hash = prev
        row.row_hash = row_hash(prev, row)
        session.info[_HEADS_KEY][(row.__tablename__, row.tenant_id)] = (shard, row.chain_seq, row.row_hash)


@event.listens_for(Session, "before_flush")
def _seal_new_rows(session: Session, _ctx: Any, _instances: Any) -> None:
    """Chain every new audit row of this flush (rows added straight to the session, e.g. by the seed, too)."""
    new = [obj for obj in session.new if isinstance(obj, CHAINED) and obj.chain_seq is None]
    if not new:
        return
    tenant_id = session.info.get("tenant_id")
    for obj in new:
        if obj.tenant_id is None and tenant_id is not None:
            obj.tenant_id = tenant_id  # the tenant stamp (backend.db) may run after this hook
    # Changes before reads, then in time order: every transaction claims the tables' chains in the same order.
    new.sort(key=lambda r: (CHAINED.index(type(r)), r.occurred_at, str(r.id)))
    seal(session, new)


@event.listens_for(Session, "after_commit")
@event.listens_for(Session, "after_rollback")
def _forget_heads(session: Session) -> None:
    session.info.pop(_HEADS_KEY, None)


# -- verification -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Break:
    """The first row where a chain does not hold."""

    table: str
    tenant_id: uuid.UUID
    chain_shard: int
    chain_seq: int | None
    row_id: uuid.UUID
    reason: str

    def describe(self) -> str:
        where = f"shard {self.chain_shard}, chain_seq {self.chain_seq}"
        return f"{self.table}: practice {self.tenant_id}, row {self.row_id} ({where}): {self.reason}"


@dataclass
class ChainReport:
    table: str
    tenant_id: uuid.UUID
    shard: int = 0
    rows: int = 0
    head_hash: str = GENESIS
    broken: Break | None = None


def _rows(session: Session, model: type[Chained], tenant_id: uuid.UUID | None) -> Iterator[Chained]:
    query: Any = select(model)
    if tenant_id is not None:
        query = query.where(col(model.tenant_id) == tenant_id)
    query = query.order_by(col(model.tenant_id), col(model.chain_shard), col(model.chain_seq))
    query = query.execution_options(yield_per=1000)
    yield from session.exec(query)


def verify_chains(session: Session, *, tenant_id: uuid.UUID | None = None) -> list[ChainReport]:
    """Walk every chain (or one practice's: each of its shards) from its first row; each report names the first
    broken row, if any."""
    reports: list[ChainReport] = []
    for model in CHAINED:
        current: ChainReport | None = None
        for row in _rows(session, model, tenant_id):
            if current is None or (current.tenant_id, current.shard) != (row.tenant_id, row.chain_shard):
                current = ChainReport(table=model.__tablename__, tenant_id=row.tenant_id, shard=row.chain_shard)
                reports.append(current)
            if current.broken is not None:
                continue
            expected_seq = current.rows + 1
            current.rows += 1

            reason = ""
            if row.chain_seq != expected_seq:
                reason = f"expected chain_seq {expected_seq} (a row is missing or was re-numbered)"
            elif row.prev_hash != current.head_hash:
                reason = "prev_hash does not match the previous row's hash (a row before it was removed or changed)"
            elif row.row_hash != row_hash(current.head_hash, row):
                reason = "row_hash does not match the row's content (the row was changed)"
            if reason:
                current.broken = Break(
                    model.__tablename__, row.tenant_id, row.chain_shard, row.chain_seq, row.id, reason
                )
            else:
                current.head_hash = str(row.row_hash)
    return reports
