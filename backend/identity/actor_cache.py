"""Bearer tokens without a database round trip per request: the actor a token's session resolved to, remembered by
this process until anything that could change the answer commits.

Every API request used to re-read its token's session, membership and user in a transaction of its own (four round
trips before the route's own work). The answer only changes when a row of `users`, `memberships` or
`user_sessions` is updated or deleted (a revoked session, a deactivated user, a changed role, MFA enrolment
confirmed, a password reset ending every session). So:

* every such write, through the ORM (an object flushed) or an ORM-enabled UPDATE/DELETE on those tables, marks its
  unit of work; when that unit of work commits, the practice's *auth generation* is bumped (a value in Redis per
  practice, shared by every process, set to a new random value on every move so a value Redis lost never comes
  back; this process's own counter without Redis). System-scope writes, whose
  practice is not known, bump the global generation;
* a cached answer carries the generations read *before* the database was asked, and is used only while both are
  unchanged (one Redis MGET per request instead of a transaction). A change that commits after that read bumps
  past it, so an answer read from the old rows can never outlive the change by more than the commit-to-bump gap;
* as a backstop (a process that died between its commit and its bump), an answer is used for at most
  `MAX_AGE_SECONDS`, and without Redis reachable nothing is cached.

Exempt: inserts (a new session, user or membership cannot be in anyone's cache) and an UPDATE that only moves a
session's coarse idle copy (`last_seen_at`) or rotates its refresh token: neither changes who the token is.
The session's expiry and idle clock are still checked on every request (the clock in Redis, as before).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis
from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session

from backend.redis_client import get_redis
from backend.settings import get_settings
from backend.tenancy.context import Actor

logger = logging.getLogger(__name__)

MAX_AGE_SECONDS = 30.0
MAX_ENTRIES = 20_000
_AUTH_TABLES = frozenset({"users", "memberships", "user_sessions"})
# Columns whose change alone does not change who a token is (see the module's docstring).
_HARMLESS = frozenset(
    {"last_seen_at", "refresh_hash", "refresh_generation", "updated_at", "last_login_at", "mfa_last_step"}
)
_DIRTY_KEY = "auth_cache_dirty"  # Session.info: the practices (None: unknown, global) whose generation must move
_GLOBAL = "global"


@dataclass(frozen=True)
class Entry:
    """What a token's session resolved to, and what its idle clock needs."""

    actor: Actor
    enrolment_only: bool
    expires_at: datetime
    idle_timeout_seconds: int | None
    created_at: datetime
    last_seen_at: datetime | None
    generations: tuple[str, str]
    stored_at: float
    user_id: uuid.UUID
    role: str


_lock = threading.Lock()
_entries: dict[uuid.UUID, Entry] = {}
_memory_generations: dict[str, int] = {}


def _key(scope: str) -> str:
    return f"{get_settings().redis_key_prefix}:authgen:{scope}"


def generations(tenant_id: uuid.UUID) -> tuple[str, str] | None:
    """The practice's and the global auth generation, or None when they cannot be read (then nothing is cached)."""
    if not get_settings().redis_url:
        with _lock:
            return str(_memory_generations.get(str(tenant_id), 0)), str(_memory_generations.get(_GLOBAL, 0))
    keys = [_key(str(tenant_id)), _key(_GLOBAL)]
    try:
        client = get_redis()
        values = client.mget(keys)
        if None in values:  # type: ignore[operator]
            # A generation Redis never had (or lost: a restart, a failover, an eviction) starts at a random value,
            # never at one it had before: an answer cached under an old value must not become valid again.
            for key, value in zip(keys, values, strict=True):  # type: ignore[arg-type]
                if value is None:
                    client.set(key, secrets.randbits(62), nx=True)
            values = client.mget(keys)
    except redis.RedisError:
        return None
    if None in values:  # type: ignore[operator]
        return None
    tenant_value, global_value = values  # type: ignore[misc]
    return tenant_value.decode(), global_value.decode()


def bump(scopes: set[str]) -> None:
    """Move the generation of each scope (a practice id or "global"): every cached answer under it is dropped."""
    if not scopes:
        return
    with _lock:
        for scope in scopes:
            _memory_generations[scope] = _memory_generations.get(scope, 0) + 1
        if _GLOBAL in scopes:
            _entries.clear()
        else:
            for sid in [sid for sid, e in _entries.items() if str(e.actor.tenant_id) in scopes]:
                del _entries[sid]
    if not get_settings().redis_url:
        return
    try:
        with get_redis().pipeline(transaction=False) as pipe:
            for scope in scopes:
                pipe.set(_key(scope), secrets.randbits(62))  # a new value, never an old one (see generations)
            pipe.execute()
    except redis.RedisError:
        # Other processes may keep a stale answer for at most MAX_AGE_SECONDS; say so loudly.
        logger.error("auth cache: could not move the generation in Redis; other processes expire it by age")


def get(session_id: uuid.UUID, gens: tuple[str, str] | None) -> Entry | None:
    if gens is None:
        return None
    entry = _entries.get(session_id)
    if entry is None:
        return None
    if entry.generations != gens or time.monotonic() - entry.stored_at > MAX_AGE_SECONDS:
        with _lock:
            _entries.pop(session_id, None)
        return None
    return entry


def put(session_id: uuid.UUID, entry: Entry) -> None:
    with _lock:
        if len(_entries) >= MAX_ENTRIES:
            _entries.clear()
        _entries[session_id] = entry


def forget(session_id: uuid.UUID) -> None:
    with _lock:
        _entries.pop(session_id, None)


def clear() -> None:
    """Forget every cached answer (tests)."""
    with _lock:
        _entries.clear()


# -- what marks a unit of work: writes to the tables a token's answer is read from ------------------------------


def _mark(session: Session, tenant_id: Any) -> None:
    dirty: set[str] = session.info.setdefault(_DIRTY_KEY, set())
    dirty.add(str(tenant_id) if tenant_id is not None else _GLOBAL)


def _changed_columns(obj: Any) -> set[str]:
    from sqlalchemy import inspect

    state = inspect(obj)
    return {attr.key for attr in state.attrs if attr.history.has_changes()}


@event.listens_for(Session, "before_flush")
def _note_flushed_changes(session: Session, _ctx: Any, _instances: Any) -> None:
    for obj in list(session.dirty) + list(session.deleted):
        table = getattr(obj, "__tablename__", None)
        if table not in _AUTH_TABLES:
            continue
        if obj in session.dirty and not (_changed_columns(obj) - _HARMLESS):
            continue
        _mark(session, getattr(obj, "tenant_id", None))


@event.listens_for(Session, "do_orm_execute")
def _note_bulk_changes(state: ORMExecuteState) -> None:
    if not (state.is_update or state.is_delete):
        return
    statement: Any = state.statement
    table = getattr(getattr(statement, "table", None), "name", None)
    if table not in _AUTH_TABLES:
        return
    if state.is_update:
        values = {getattr(k, "key", k) for k in (getattr(statement, "_values", None) or {})}
        if values and not (values - _HARMLESS):
            return
    _mark(state.session, state.session.info.get("tenant_id"))


@event.listens_for(Session, "after_commit")
def _bump_after_commit(session: Session) -> None:
    dirty = session.info.pop(_DIRTY_KEY, None)
    if dirty:
        bump(dirty)


@event.listens_for(Session, "after_rollback")
def _forget_marks(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint rolled back: the outer transaction's marks still hold for its commit
    session.info.pop(_DIRTY_KEY, None)
