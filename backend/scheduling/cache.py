"""Redis caching for provider search, with the tenant in every key; a no-op without Redis.

Two kinds of entry: the practice's provider directory (changes rarely) and each provider's next free
slot (changes with every booking, cancellation and availability edit of that provider). A change
invalidates exactly the entries it affects, after its transaction commits; a provider's change also marks its
next free slot stored in PostgreSQL stale then (backend/scheduling/next_free.py), the layer under this one.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any, cast

import redis

from backend.db import UnitOfWork
from backend.observability import metrics
from backend.settings import get_settings

logger = logging.getLogger(__name__)
TTL_SECONDS = 300


def _client() -> redis.Redis | None:
    if not get_settings().redis_url:
        return None
    from backend.redis_client import get_redis

    return get_redis()


def directory_key(tenant_id: uuid.UUID) -> str:
    return f"clinic:{tenant_id}:cache:directory"


def next_free_key(tenant_id: uuid.UUID, provider_id: uuid.UUID) -> str:
    return f"clinic:{tenant_id}:cache:nextfree:{provider_id}"


def _stats_key(tenant_id: uuid.UUID) -> str:
    return f"clinic:{tenant_id}:cache:stats"


# The values of KEYS[2..] and, in the same round trip, the hits and misses counted in the stats hash KEYS[1].
_GET_MANY_SCRIPT = """
local values = redis.call('mget', unpack(KEYS, 2))
local hits = 0
for i = 1, #KEYS - 1 do
    if values[i] then
        hits = hits + 1
    end
end
if hits > 0 then
    redis.call('hincrby', KEYS[1], 'hits', hits)
end
if hits < #KEYS - 1 then
    redis.call('hincrby', KEYS[1], 'misses', #KEYS - 1 - hits)
end
return values
"""


def get_many(tenant_id: uuid.UUID, keys: list[str]) -> list[Any | None]:
    """Read cached JSON values (None for a miss) and count hits and misses for the tenant: one round trip."""
    client = _client()
    if client is None or not keys:
        return [None] * len(keys)
    try:
        # A Lua nil (a miss) comes back as None. Registering only hashes the script; it is loaded into Redis once.
        raw = cast(list[bytes | None], client.register_script(_GET_MANY_SCRIPT)(keys=[_stats_key(tenant_id), *keys]))
    except redis.RedisError:
        logger.warning("cache read failed; computing without it")
        return [None] * len(keys)
    hits = sum(1 for r in raw if r is not None)
    metrics.record_cache_lookups(hits=hits, misses=len(keys) - hits)
    return [json.loads(r) if r is not None else None for r in raw]


def set_many(values: dict[str, Any]) -> None:
    """Store JSON values with the cache's time to live."""
    client = _client()
    if client is None or not values:
        return
    try:
        pipe = client.pipeline(transaction=False)
        for key, value in values.items():
            pipe.set(key, json.dumps(value), ex=TTL_SECONDS)
        pipe.execute()
    except redis.RedisError:
        logger.warning("cache write failed")


def _delete_after_commit(uow: UnitOfWork, keys: list[str]) -> None:
    def delete() -> None:
        client = _client()
        if client is not None:
            client.delete(*keys)

    uow.after_commit(delete)


_CHANGED = "waitwell.next_free_changed"


def invalidate_provider(uow: UnitOfWork, provider_id: uuid.UUID) -> None:
    """Mark the provider's stored next free slot stale in the change's own transaction (PostgreSQL: one statement
    for every provider the unit of work changed, just before it commits), and forget its cached copy (Redis) once
    it has committed. The next search that needs it, or the sweep task, computes it again
    (backend/scheduling/next_free.py)."""
    if uow.tenant_id is None:
        return
    changed: set[uuid.UUID] | None = uow.session.info.get(_CHANGED)
    if changed is None:
        changed = uow.session.info[_CHANGED] = set()
        uow.before_commit(lambda: _mark(uow, changed))
        uow.after_commit(lambda: _forget(uow, changed))
    changed.add(provider_id)


def _mark(uow: UnitOfWork, changed: set[uuid.UUID]) -> None:
    from backend.scheduling import next_free

    uow.session.info.pop(_CHANGED, None)  # a later change in the same unit of work marks again
    if uow.tenant_id is not None and changed:
        next_free.mark_in(uow, sorted(changed))


def _forget(uow: UnitOfWork, changed: set[uuid.UUID]) -> None:
    tenant_id = uow.tenant_id
    client = _client()
    if tenant_id is None or not changed or client is None:
        return
    try:
        client.delete(*(next_free_key(tenant_id, p) for p in changed))
    except redis.RedisError:
        logger.warning("cache delete failed")


def invalidate_directory(uow: UnitOfWork) -> None:
    """Forget the practice's provider directory once the change commits."""
    if uow.tenant_id is not None:
        _delete_after_commit(uow, [directory_key(uow.tenant_id)])


def stats(tenant_id: uuid.UUID) -> dict[str, int]:
    """Hits and misses counted so far for the tenant."""
    client = _client()
    if client is None:
        return {"hits": 0, "misses": 0}
    raw = cast(dict[bytes, bytes], client.hgetall(_stats_key(tenant_id)))
    return {"hits": int(raw.get(b"hits", 0)), "misses": int(raw.get(b"misses", 0))}
