"""Redis marks for slots being booked right now (tenant in every key).

A booking takes the mark before its transaction and releases it only after commit or rollback, so a
second patient is told at once and searches show the slot as held. The database has the last word.
Without Redis there are no marks: SQLite serializes writers anyway.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import cast

import redis

from backend.db import UnitOfWork
from backend.errors import Conflict
from backend.settings import get_settings

MARK_SECONDS = 15  # longer than any booking transaction; expires by itself if a process dies


def mark_key(tenant_id: uuid.UUID, provider_id: uuid.UUID, start: datetime) -> str:
    return f"clinic:{tenant_id}:slot:{provider_id}:{int(start.timestamp())}"


def take_mark(uow: UnitOfWork, provider_id: uuid.UUID, start: datetime) -> None:
    """Mark the slot as being booked, or refuse at once when another booking holds the mark."""
    if not get_settings().redis_url or uow.tenant_id is None:
        return
    from backend.redis_client import get_redis

    key = mark_key(uow.tenant_id, provider_id, start)
    taken: set[str] = uow.__dict__.setdefault("_slot_marks", set())
    if key in taken:
        return  # this unit of work already holds the mark (e.g. trying a second candidate for one slot)
    # thread_local=False: the mark is released after commit, possibly on another thread of the server.
    lock = get_redis().lock(key, timeout=MARK_SECONDS, blocking=False, thread_local=False)
    try:
        # A random token of our own: redis-py's default, uuid1, is slow to make and carries the host's address.
        acquired = lock.acquire(blocking=False, token=uuid.uuid4().hex)
    except redis.RedisError:
        return  # Redis only shortens contention; the database still decides
    if not acquired:
        raise Conflict("Someone else is booking this time right now. Please choose another slot.")
    taken.add(key)

    def release() -> None:
        try:
            lock.release()  # redis-py checks the token: never releases another holder's mark
        except (redis.RedisError, redis.exceptions.LockError):
            pass

    uow.on_close(release)


def marked_starts(tenant_id: uuid.UUID, provider_id: uuid.UUID, starts: Sequence[datetime]) -> set[datetime]:
    """The starts among `starts` that someone is booking right now."""
    if not get_settings().redis_url or not starts:
        return set()
    from backend.redis_client import get_redis

    try:
        values = cast(list[bytes | None], get_redis().mget([mark_key(tenant_id, provider_id, s) for s in starts]))
    except redis.RedisError:
        return set()
    return {s for s, v in zip(starts, values, strict=True) if v is not None}
