"""Burst-safe counters of active waitlist entries per (tenant, provider) and (tenant, clinic).

A join INCRs the counters before it inserts, compares with the policy's limit and DECRs at once when it
overshoots, so twenty simultaneous joins for a provider with five places left admit exactly five. The
database stays the source of truth:

- a missing key is initialised from the database count (atomically, "SET if absent" then INCR);
- a join whose transaction does not commit gives its place back when the unit of work closes;
- an entry that leaves the active set (cancelled, removed, booked, expired) DECRs after commit:
  call `release(uow, entry)` in the transaction that changes its status;
- `reconcile(tenant_id)` recounts every key of a tenant from the database (a beat task).

Without Redis (or when Redis fails) the limits are checked by counting in the database inside the
transaction, under a transaction-scoped advisory lock per (tenant, provider/clinic) on PostgreSQL.

Known imprecision, by design: a key recreated or reconciled while joins are in flight does not see
those uncommitted joins, so for that moment the counter can run low by the number in flight; the next
`reconcile` corrects it. Every key carries the tenant id.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import redis
from sqlalchemy import func, text
from sqlmodel import col, select

from backend.db import UnitOfWork
from backend.errors import Code, ValidationFailed
from backend.settings import get_settings
from backend.tenancy.context import Actor
from backend.waitlist.models import ACTIVE_ENTRY_STATUSES, WaitlistEntry

logger = logging.getLogger(__name__)

PROVIDER, CLINIC = "provider", "clinic"

# KEYS[1] the counter; ARGV[1] the database count to start from, or "" when the caller has none yet.
# Returns the new value, or -1 when the key is missing and no starting count was given.
_INCR = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  if ARGV[1] == '' then return -1 end
  redis.call('SET', KEYS[1], ARGV[1])
end
return redis.call('INCR', KEYS[1])
"""
# DECR an existing key, never below zero; a missing key stays missing (the database count will seed it).
_DECR = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local v = redis.call('DECR', KEYS[1])
if v < 0 then redis.call('SET', KEYS[1], 0) return 0 end
return v
"""


def key(tenant_id: uuid.UUID, kind: str, obj_id: uuid.UUID) -> str:
    """The counter of active entries for one provider or clinic of one tenant."""
    return f"clinic:{tenant_id}:waitlist:active:{kind}:{obj_id}"


def _client() -> redis.Redis | None:
    if not get_settings().redis_url:
        return None
    from backend.redis_client import get_redis

    return get_redis()


def db_count(uow: UnitOfWork, kind: str, obj_id: uuid.UUID) -> int:
    """Active entries of one provider or clinic, counted in the database (scoped to the tenant)."""
    column = WaitlistEntry.provider_id if kind == PROVIDER else WaitlistEntry.clinic_id
    query = (
        select(func.count())
        .select_from(WaitlistEntry)
        .where(col(column) == obj_id, col(WaitlistEntry.status).in_(ACTIVE_ENTRY_STATUSES))
    )
    return int(uow.session.exec(query).one())


def _incr(client: redis.Redis, uow: UnitOfWork, name: str, kind: str, obj_id: uuid.UUID) -> int:
    value = int(client.eval(_INCR, 1, name, ""))  # type: ignore[arg-type]
    if value == -1:
        value = int(client.eval(_INCR, 1, name, str(db_count(uow, kind, obj_id))))  # type: ignore[arg-type]
    return value


def _decr(client: redis.Redis, name: str) -> None:
    client.eval(_DECR, 1, name)


def _refusal(kind: str, limit: int) -> ValidationFailed:
    if kind == PROVIDER:
        return ValidationFailed(
            f"max_active_per_provider ({limit}) reached for this provider",
            field="provider_id",
            code=Code.WAITLIST_MAX_ACTIVE_PER_PROVIDER,
            params={"limit": limit},
        )
    return ValidationFailed(
        f"max_active_per_clinic ({limit}) reached for this clinic",
        field="clinic_id",
        code=Code.WAITLIST_MAX_ACTIVE_PER_CLINIC,
        params={"limit": limit},
    )


def _db_reserve(uow: UnitOfWork, limits: list[tuple[str, uuid.UUID, int]]) -> None:
    postgres = uow.session.get_bind().dialect.name == "postgresql"
    for kind, obj_id, limit in limits:
        if postgres:
            uow.session.execute(
                text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
                {"key": key(uow.tenant_id or uuid.UUID(int=0), kind, obj_id)},
            )
        if db_count(uow, kind, obj_id) >= limit:
            raise _refusal(kind, limit)


def reserve(
    uow: UnitOfWork,
    *,
    clinic_id: uuid.UUID,
    provider_id: uuid.UUID | None,
    provider_limit: int,
    clinic_limit: int,
) -> None:
    """Take one place under the provider's and the clinic's limits, or raise ValidationFailed naming the rule.

    The places are given back when the unit of work closes without committing."""
    if uow.tenant_id is None:
        raise ValueError("counters belong to a tenant")
    limits: list[tuple[str, uuid.UUID, int]] = []
    if provider_id is not None:
        limits.append((PROVIDER, provider_id, provider_limit))
    limits.append((CLINIC, clinic_id, clinic_limit))
    client = _client()
    if client is None:
        _db_reserve(uow, limits)
        return
    taken: list[str] = []
    state = {"committed": False}

    def give_back(names: list[str]) -> None:
        for name in names:
            try:
                _decr(client, name)
            except redis.RedisError:
                logger.warning("waitlist counter could not be given back; reconcile will correct it")

    try:
        for kind, obj_id, limit in limits:
            name = key(uow.tenant_id, kind, obj_id)
            value = _incr(client, uow, name, kind, obj_id)
            if value > limit:
                give_back([name, *taken])
                taken = []
                raise _refusal(kind, limit)
            taken.append(name)
    except redis.RedisError:
        logger.warning("Redis unavailable for waitlist counters; counting in the database")
        give_back(taken)
        _db_reserve(uow, limits)
        return

    def committed() -> None:
        state["committed"] = True

    def closed() -> None:
        if not state["committed"]:
            give_back(taken)

    uow.after_commit(committed)
    uow.on_close(closed)


def release(uow: UnitOfWork, entry: WaitlistEntry) -> None:
    """The entry leaves the active set in this transaction: DECR its counters once it commits.

    Call exactly once per transition out of waiting/offered (cancelled, removed, booked, expired)."""
    tenant_id = entry.tenant_id
    names = [key(tenant_id, CLINIC, entry.clinic_id)]
    if entry.provider_id is not None:
        names.append(key(tenant_id, PROVIDER, entry.provider_id))

    def after() -> None:
        client = _client()
        if client is None:
            return
        for name in names:
            try:
                _decr(client, name)
            except redis.RedisError:
                logger.warning("waitlist counter not decremented; reconcile will correct it")

    uow.after_commit(after)


def current(tenant_id: uuid.UUID, kind: str, obj_id: uuid.UUID) -> int | None:
    """The counter's value (None when the key is missing or Redis is not configured)."""
    client = _client()
    if client is None:
        return None
    raw: Any = client.get(key(tenant_id, kind, obj_id))
    return None if raw is None else int(raw)


def reconcile(tenant_id: uuid.UUID) -> dict[str, int]:
    """Recount every counter of a tenant from the database; drop keys with nothing behind them.

    Returns the values written, by key."""
    client = _client()
    if client is None:
        return {}
    with UnitOfWork(Actor.system(tenant_id)) as uow:
        active = col(WaitlistEntry.status).in_(ACTIVE_ENTRY_STATUSES)
        by_provider = uow.session.exec(
            select(WaitlistEntry.provider_id, func.count())
            .where(active, col(WaitlistEntry.provider_id).is_not(None))
            .group_by(col(WaitlistEntry.provider_id))
        ).all()
        by_clinic = uow.session.exec(
            select(WaitlistEntry.clinic_id, func.count()).where(active).group_by(col(WaitlistEntry.clinic_id))
        ).all()
    values: dict[str, int] = {}
    for provider_id, count in by_provider:
        if provider_id is not None:
            values[key(tenant_id, PROVIDER, provider_id)] = int(count)
    for clinic_id, count in by_clinic:
        values[key(tenant_id, CLINIC, clinic_id)] = int(count)
    stale = [k for k in client.scan_iter(f"clinic:{tenant_id}:waitlist:active:*") if k.decode() not in values]
    pipe = client.pipeline(transaction=True)
    if stale:
        pipe.delete(*stale)
    for name, count in values.items():
        pipe.set(name, count)
    pipe.execute()
    return values
