"""Rate limiting policy and storage, shared by the REST API and the Reflex page handlers.

Each limit class ("search", "booking", ...) has a limit per client address and, for the classes whose caller is
signed in, a limit per practice. Counts live in Redis (settings.redis_url) as moving windows, or in process memory
in the embedded mode. The limiter fails open: when Redis cannot be reached a request is allowed and a warning is
logged (without the address or any other personal data). Every refused request increments a breach counter per
class (`breach_counts()`), for the operations metrics.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

import redis
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from redis.commands.core import Script

from backend.identity import throttle  # the login throttle counts its own refusals
from backend.observability import metrics
from backend.settings import Settings, get_settings

logger = logging.getLogger(__name__)

SEARCH = "search"
SLOTS = "slots"
BOOKING = "booking"
WAITLIST_JOIN = "waitlist_join"
AUTH = "auth"
UNSUBSCRIBE = "unsubscribe"
WEBHOOKS = "webhooks"
LIMIT_CLASSES: tuple[str, ...] = (SEARCH, SLOTS, BOOKING, WAITLIST_JOIN, AUTH, UNSUBSCRIBE, WEBHOOKS)
# Classes with a second, per-practice limit (their callers are signed in).
PRACTICE_CLASSES: tuple[str, ...] = (SEARCH, SLOTS, BOOKING, WAITLIST_JOIN)

# After a storage failure, skip the storage (allow everything) for this long instead of waiting on a dead Redis
# with every request; and log the failure at most once per this many seconds.
STORAGE_RETRY_SECONDS = 5.0
WARNING_INTERVAL_SECONDS = 60.0
_REDIS_TIMEOUT_SECONDS = 0.5


@dataclass(frozen=True)
class Policy:
    """The limits of one class: per client address, and optionally per practice."""

    address: RateLimitItem
    practice: RateLimitItem | None = None


@dataclass(frozen=True)
class Decision:
    """The outcome of one check, with what the RateLimit-* headers report (the tightest applicable limit)."""

    limit_class: str
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int

    @property
    def retry_after(self) -> int:
        return max(1, self.reset_seconds)

    @property
    def message(self) -> str:
        return f"Too many requests. Try again in {self.retry_after} seconds."

    def headers(self) -> dict[str, str]:
        """IETF RateLimit-* headers (draft-ietf-httpapi-ratelimit-headers), plus Retry-After when refused."""
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(max(0, self.remaining)),
            "RateLimit-Reset": str(self.retry_after if not self.allowed else max(0, self.reset_seconds)),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
        return headers


def policies_from_settings(settings: Settings) -> dict[str, Policy]:
    """Parse the limit strings of the settings (ValueError on a malformed one)."""
    result: dict[str, Policy] = {}
    for name in LIMIT_CLASSES:
        practice = getattr(settings, f"rate_limit_practice_{name}", None)
        result[name] = Policy(
            address=parse(getattr(settings, f"rate_limit_{name}")),
            practice=parse(practice) if practice else None,
        )
    return result


# One request's moving windows in one round trip. KEYS: the windows in order (the address's, then the practice's);
# ARGV: now, then (limit, expiry seconds) per key. Each window is a list of request times, newest first, at most
# `limit` long: the `limits` library's moving-window layout. A window is hit only when every earlier one allowed the
# request. Per window hit: {allowed 1|0, entries in the window, its oldest entry (a string; now when empty)}.
_HIT_SCRIPT = """
local now = tonumber(ARGV[1])
local result = {}
for i, key in ipairs(KEYS) do
    local limit = tonumber(ARGV[2 * i])
    local expiry = tonumber(ARGV[2 * i + 1])
    local start = now - expiry
    local allowed = 0
    local last = redis.call('lindex', key, limit - 1)
    if not (last and tonumber(last) >= start) then
        redis.call('lpush', key, ARGV[1])
        redis.call('ltrim', key, 0, limit - 1)
        redis.call('expire', key, expiry)
        allowed = 1
    end
    local low, high, found = 0, limit - 1, nil
    while low <= high do
        local mid = math.floor((low + high) / 2)
        local value = tonumber(redis.call('lindex', key, mid))
        if value and value >= start then
            found = mid
            low = mid + 1
        else
            high = mid - 1
        end
    end
    if found then
        result[#result + 1] = allowed
        result[#result + 1] = found + 1
        result[#result + 1] = redis.call('lindex', key, found)
    else
        result[#result + 1] = allowed
        result[#result + 1] = 0
        result[#result + 1] = ARGV[1]
    end
    if allowed == 0 then
        break
    end
end
return result
"""


class RateLimiter:
    """Moving-window limits per (class, client address) and (class, practice), in Redis or memory."""

    def __init__(
        self,
        policies: Mapping[str, Policy],
        *,
        redis_url: str | None,
        key_prefix: str,
        enabled: bool = True,
    ) -> None:
        self.policies = dict(policies)
        self.enabled = enabled
        self.key_prefix = key_prefix
        self._redis: redis.Redis | None = None
        self._script: Script | None = None
        # Without Redis: the `limits` library's moving window in this process.
        self._memory = MovingWindowRateLimiter(MemoryStorage())
        if redis_url:
            self._redis = redis.Redis.from_url(
                redis_url, socket_timeout=_REDIS_TIMEOUT_SECONDS, socket_connect_timeout=_REDIS_TIMEOUT_SECONDS
            )
            self._script = self._redis.register_script(_HIT_SCRIPT)
        self._memory_breaches: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._last_warning = -math.inf

    # -- checks -----------------------------------------------------------------------------------------------

    def check(self, limit_class: str, *, address: str | None, practice: str | None = None) -> Decision | None:
        """Count one request of `limit_class`; None when limiting is off (or the storage is down: fail open)."""
        policy = self.policies.get(limit_class)
        if not self.enabled or policy is None:
            return None
        if time.monotonic() < self._down_until:
            return None
        checks: list[tuple[RateLimitItem, str, str]] = [(policy.address, "address", address or "unknown")]
        if policy.practice is not None and practice:
            checks.append((policy.practice, "practice", practice))
        try:
            if self._script is not None:
                windows = self._hit_in_redis(self._script, limit_class, checks)
            else:
                windows = self._hit_in_memory(limit_class, checks)
        except Exception as exc:  # noqa: BLE001 - any storage failure fails open, by design
            self._storage_failed(exc)
            return None
        now = time.time()
        decisions = [
            Decision(
                limit_class=limit_class,
                allowed=allowed,
                limit=item.amount,
                remaining=remaining,
                reset_seconds=max(0, math.ceil(reset_at - now)),
            )
            for (item, _kind, _ident), (allowed, remaining, reset_at) in zip(checks, windows, strict=False)
        ]
        refused = next((d for d in decisions if not d.allowed), None)
        if refused is not None:
            self._count_breach(limit_class)
            return refused
        return min(decisions, key=lambda d: d.remaining)

    def _window_key(self, item: RateLimitItem, limit_class: str, kind: str, ident: str) -> str:
        """A window's Redis key: the `limits` library's (its storage prefixes the item's key the same way)."""
        return f"{self.key_prefix}:{item.key_for(limit_class, kind, ident)}"

    def _hit_in_redis(
        self, script: Script, limit_class: str, checks: list[tuple[RateLimitItem, str, str]]
    ) -> list[tuple[bool, int, float]]:
        """Every window of the request in one script call: hit each in turn (none after a refusal), then read its
        count and oldest entry. (allowed, remaining, reset time) per window hit."""
        now = time.time()
        args: list[float | int] = [now]
        for item, _kind, _ident in checks:
            args += [item.amount, item.get_expiry()]
        keys = [self._window_key(item, limit_class, kind, ident) for item, kind, ident in checks]
        flat = script(keys=keys, args=args)
        windows = []
        for index in range(0, len(flat), 3):
            item = checks[index // 3][0]
            allowed, count, oldest = bool(int(flat[index])), int(flat[index + 1]), float(flat[index + 2] or now)
            windows.append((allowed, item.amount - count, oldest + item.get_expiry()))
        return windows

    def _hit_in_memory(
        self, limit_class: str, checks: list[tuple[RateLimitItem, str, str]]
    ) -> list[tuple[bool, int, float]]:
        windows = []
        for item, kind, ident in checks:
            allowed = self._memory.hit(item, limit_class, kind, ident)
            stats = self._memory.get_window_stats(item, limit_class, kind, ident)
            windows.append((allowed, stats.remaining, stats.reset_time))
            if not allowed:
                break
        return windows

    def _storage_failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        self._down_until = now + STORAGE_RETRY_SECONDS
        if now - self._last_warning >= WARNING_INTERVAL_SECONDS:
            self._last_warning = now
            # The exception's type only: its text could carry a key, and keys carry client addresses.
            logger.warning("rate limiter storage unavailable (%s); allowing requests", type(exc).__name__)

    # -- metrics ----------------------------------------------------------------------------------------------

    def _breach_key(self, limit_class: str) -> str:
        return f"{self.key_prefix}:metrics:rate_limited:{limit_class}"

    def _count_breach(self, limit_class: str) -> None:
        if self._redis is None:
            with self._lock:
                self._memory_breaches[limit_class] += 1
            return
        try:
            self._redis.incr(self._breach_key(limit_class))
        except redis.RedisError as exc:
            self._storage_failed(exc)

    def breach_counts(self) -> dict[str, int]:
        """Refused requests per limit class since the counters began (every class, zeros included)."""
        if self._redis is None:
            with self._lock:
                return {name: self._memory_breaches[name] for name in LIMIT_CLASSES}
        try:
            values = self._redis.mget([self._breach_key(name) for name in LIMIT_CLASSES])
        except redis.RedisError as exc:
            self._storage_failed(exc)
            return dict.fromkeys(LIMIT_CLASSES, 0)
        return {name: int(value or 0) for name, value in zip(LIMIT_CLASSES, values, strict=True)}  # type: ignore[arg-type]

    def clear(self, limit_class: str, *, address: str | None = None, practice: str | None = None) -> None:
        """Forget the counts of one address and/or practice (tests, and an operator's manual reset)."""
        policy = self.policies[limit_class]
        windows: list[tuple[RateLimitItem, str, str]] = []
        if address is not None:
            windows.append((policy.address, "address", address))
        if practice is not None and policy.practice is not None:
            windows.append((policy.practice, "practice", practice))
        for item, kind, ident in windows:
            if self._redis is not None:
                self._redis.delete(self._window_key(item, limit_class, kind, ident))
            else:
                self._memory.clear(item, limit_class, kind, ident)


_limiter: RateLimiter | None = None
_limiter_lock = threading.Lock()


def build_limiter(settings: Settings) -> RateLimiter:
    return RateLimiter(
        policies_from_settings(settings),
        redis_url=settings.redis_url,
        key_prefix=f"{settings.redis_key_prefix}:ratelimit",
        enabled=settings.rate_limit_enabled,
    )


def get_limiter() -> RateLimiter:
    """The process-wide limiter, built from the settings on first use."""
    global _limiter
    if _limiter is None:
        with _limiter_lock:
            if _limiter is None:
                _limiter = build_limiter(get_settings())
    return _limiter


def set_limiter(limiter: RateLimiter | None) -> None:
    """Replace the process-wide limiter (None: rebuild from the settings on next use). For tests."""
    global _limiter
    _limiter = limiter


def check(
    limit_class: str, *, address: str | None, practice: str | None = None, route: str = "page"
) -> Decision | None:
    """Count one request; a refusal is also counted for the metrics by `route` (a route template, or "page" for the
    pages' handlers) and practice."""
    decision = get_limiter().check(limit_class, address=address, practice=practice)
    if decision is not None and not decision.allowed:
        metrics.record_rate_limited(limit_class, route=route, practice=practice)
    return decision


def breach_counts() -> dict[str, int]:
    """Refused requests per limit class, and refused logins ("login"), for the operations metrics export."""
    return {**get_limiter().breach_counts(), "login": throttle.breach_count("login")}
