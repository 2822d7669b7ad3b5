"""Automatic logoff (HIPAA 164.312(a)(2)(iii)): the idle clock of a session, kept without a database write per
request.

A session's last activity lives in Redis (in process memory without Redis) under `<prefix>:idle:<session id>`,
one atomic script per look: it reads the last activity, decides whether the session has been idle for its timeout,
and (only for activity by the person) moves the clock on. The database keeps a coarse copy, `user_sessions.
last_seen_at`, written at most once per `idle_persist_seconds` per session (the script says when it is due): it is
the floor the clock falls back to when Redis lost the key, so a lost key can only end a session sooner, never keep
an idle one alive.

What counts as activity is decided by the callers: a bearer token's request (API), and for the browser only the
page's report of the person's own input (portal/components/idle.py), never a live push, a timer or a reconnect.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import redis

from backend.errors import AuthenticationFailed
from backend.redis_client import get_redis
from backend.settings import Settings, get_settings
from backend.tenancy.context import Role

logger = logging.getLogger(__name__)

IDLE_REASON = "idle"
STAFF_ROLES = frozenset({Role.DOCTOR, Role.ADMIN})


def timeout_for(role: Role | str, settings: Settings | None = None) -> int:
    """The idle timeout in seconds a new session of `role` gets: staff (doctor, admin) and patients differ."""
    settings = settings or get_settings()
    if Role(role) == Role.PATIENT:
        return settings.idle_timeout_patient_seconds
    return settings.idle_timeout_staff_seconds


def warning_lead(timeout_seconds: int, settings: Settings | None = None) -> int:
    """How long before the timeout the page asks "Still there?": a minute, at most half the timeout."""
    settings = settings or get_settings()
    return max(1, min(settings.idle_warning_seconds, timeout_seconds // 2))


def report_interval(timeout_seconds: int) -> int:
    """How often at most a page reports its person's activity: every 30 s, or a sixth of a short timeout."""
    return max(1, min(30, timeout_seconds // 6))


def describe(seconds: int) -> str:
    """'15 minutes', '1 minute', '20 seconds': the timeout in words for the sign-in page's notice."""
    if seconds >= 60 and seconds % 60 == 0:
        minutes = seconds // 60
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


@dataclass(frozen=True)
class Clock:
    """The outcome of one look at a session's idle clock."""

    alive: bool  # False: idle for its timeout (or longer)
    last: float  # the last activity, epoch seconds
    persist_due: bool  # this look moved the clock and the coarse copy in the database is due

    def remaining(self, timeout_seconds: int, now: float) -> float:
        return max(0.0, self.last + timeout_seconds - now)


def evaluate(last: float, floor: float, timeout_seconds: int, now: float) -> tuple[bool, float]:
    """Pure rule: (alive, last activity) from the clock's value and the persisted floor."""
    last = max(last, floor)
    return now - last < timeout_seconds, last


class Store(Protocol):
    def look(
        self, key: str, persist_key: str, *, now: float, floor: float, timeout: int, touch: bool, persist_every: float
    ) -> Clock:
        """Read (and with `touch`, move) the clock atomically; an idle clock is never moved."""


_LOOK = """
local now, floor, timeout = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local raw = redis.call('GET', KEYS[1])
local last = tonumber(raw or '0')
if floor >= last then last = floor; raw = ARGV[2] end
if now - last >= timeout then return {0, raw, 0} end
if ARGV[4] ~= '1' then return {1, raw, 0} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', math.ceil((timeout * 2 + 60) * 1000))
local due = redis.call('SET', KEYS[2], '1', 'NX', 'PX', math.ceil(tonumber(ARGV[5]) * 1000))
if due then return {1, ARGV[1], 1} end
return {1, ARGV[1], 0}
"""


class RedisStore:
    def __init__(self, client: redis.Redis) -> None:
        self._look = client.register_script(_LOOK)

    def look(
        self, key: str, persist_key: str, *, now: float, floor: float, timeout: int, touch: bool, persist_every: float
    ) -> Clock:
        args: list[str | int] = [repr(now), repr(floor), timeout, "1" if touch else "0", repr(persist_every)]
        alive, last, due = self._look(keys=[key, persist_key], args=args)  # type: ignore[misc]
        return Clock(alive=bool(int(alive)), last=float(last), persist_due=bool(int(due)))


class MemoryStore:
    """The same rule in one process (the embedded mode, or Redis unreachable)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[str, tuple[float, float]] = {}  # key -> (last activity, forget after)
        self._persisted: dict[str, float] = {}  # persist key -> next write due at

    def look(
        self, key: str, persist_key: str, *, now: float, floor: float, timeout: int, touch: bool, persist_every: float
    ) -> Clock:
        with self._lock:
            self._prune(now)
            stored = self._last.get(key)
            alive, last = evaluate(stored[0] if stored else 0.0, floor, timeout, now)
            if not alive or not touch:
                return Clock(alive=alive, last=last, persist_due=False)
            self._last[key] = (now, now + timeout * 2 + 60)
            due = self._persisted.get(persist_key, 0.0) <= now
            if due:
                self._persisted[persist_key] = now + persist_every
            return Clock(alive=True, last=now, persist_due=due)

    def _prune(self, now: float) -> None:
        if len(self._last) + len(self._persisted) < 10_000:
            return
        self._last = {k: v for k, v in self._last.items() if v[1] > now}
        self._persisted = {k: v for k, v in self._persisted.items() if v > now}


_memory = MemoryStore()


class _RecentTouches:
    """Sessions this process moved the clock of in the last few seconds. Activity again that soon needs no look:
    the session is alive, and leaving the shared clock a few seconds behind can only end it that much sooner."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._at: dict[uuid.UUID, float] = {}

    @staticmethod
    def window(timeout_seconds: int) -> float:
        return min(10.0, timeout_seconds / 60)

    def alive_since(self, session_id: uuid.UUID, now: float, timeout_seconds: int) -> float | None:
        at = self._at.get(session_id)
        if at is not None and at <= now < at + self.window(timeout_seconds):
            return at
        return None

    def note(self, session_id: uuid.UUID, at: float) -> None:
        with self._lock:
            if len(self._at) >= 10_000:
                self._at.clear()
            self._at[session_id] = at

    def forget(self, session_id: uuid.UUID) -> None:
        with self._lock:
            self._at.pop(session_id, None)


_recent = _RecentTouches()


def clock_now() -> float:
    """The idle clock's time (epoch seconds); tests move it."""
    return time.time()


def _store() -> Store:
    return RedisStore(get_redis()) if get_settings().redis_url else _memory


def keys_for(session_id: uuid.UUID) -> tuple[str, str]:
    prefix = get_settings().redis_key_prefix
    return f"{prefix}:idle:{session_id}", f"{prefix}:idle:persisted:{session_id}"


def _epoch(moment: datetime | None) -> float:
    return moment.timestamp() if moment is not None else 0.0


def look(
    session_id: uuid.UUID,
    *,
    timeout_seconds: int,
    created_at: datetime,
    last_seen_at: datetime | None,
    touch: bool,
    at: float | None = None,
) -> Clock:
    """Look at a session's idle clock; with `touch` (activity by the person) move it on unless already idle."""
    settings = get_settings()
    moment = clock_now() if at is None else at
    if touch:
        since = _recent.alive_since(session_id, moment, timeout_seconds)
        if since is not None:
            return Clock(alive=True, last=since, persist_due=False)
    key, persist_key = keys_for(session_id)
    floor = max(_epoch(created_at), _epoch(last_seen_at))
    kwargs = {
        "now": moment,
        "floor": floor,
        "timeout": timeout_seconds,
        "touch": touch,
        "persist_every": float(settings.idle_persist_seconds),
    }
    try:
        clock = _store().look(key, persist_key, **kwargs)  # type: ignore[arg-type]
    except redis.RedisError:
        # The idle clock must not take sign-ins down with Redis: this process's own clock, over the same floor.
        logger.warning("idle clock: Redis unavailable, keeping it in process")
        clock = _memory.look(key, persist_key, **kwargs)  # type: ignore[arg-type]
    if touch and clock.alive:
        _recent.note(session_id, moment)
    else:
        _recent.forget(session_id)
    return clock


def seconds_left(clock: Clock, timeout_seconds: int, at: float | None = None) -> int:
    """Seconds until the session times out, rounded up (0 once it has)."""
    moment = clock_now() if at is None else at
    return math.ceil(clock.remaining(timeout_seconds, moment)) if clock.alive else 0


class SessionIdle(AuthenticationFailed):
    """401: the session ended because it was not used for its idle timeout (automatic logoff)."""

    code = "session_idle"


IDLE_MESSAGE = "signed out after a time without activity; sign in again"
