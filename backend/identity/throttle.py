"""Login throttling by client network and account, kept in Redis (in process memory without Redis).

Three limits, all counted the same way for accounts that exist and for e-mails that do not, so that neither
the status, the message nor the Retry-After tells them apart:

- per (network, account): after `login_free_failures` attempts without a success, each further attempt from
  that network on that account waits, the wait doubling up to `login_backoff_max_seconds`. A stranger's
  failures therefore never hold back the owner on their own network.
- per network: at most `login_address_max_failures` failures per window across all accounts (credential
  stuffing from one place).
- per account: at most `login_account_max_failures` failures per window across all networks (a distributed
  attack), applied only to networks that have never signed in to the account: the networks the owner signed
  in from in the last `login_known_network_days` go on as usual.

An attempt is counted when it is let through (atomically with the check, so parallel requests cannot slip past
a limit) and uncounted by a success. Neither e-mails nor addresses are stored: keys hold keyed hashes of them.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Protocol

import redis

from backend.redis_client import get_redis
from backend.settings import Settings, get_settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    free_failures: int
    backoff_base: float
    backoff_max: float
    pair_reset: float
    address_max: int
    address_window: float
    account_max: int
    account_window: float
    known_for: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            free_failures=settings.login_free_failures,
            backoff_base=settings.login_backoff_base_seconds,
            backoff_max=settings.login_backoff_max_seconds,
            pair_reset=settings.login_pair_reset_seconds,
            address_max=settings.login_address_max_failures,
            address_window=settings.login_address_window_seconds,
            account_max=settings.login_account_max_failures,
            account_window=settings.login_account_window_seconds,
            known_for=settings.login_known_network_days * 86400.0,
        )


@dataclass(frozen=True)
class Keys:
    pair: str
    address: str
    account: str
    known: str
    network: str  # the member of `known` that stands for this network


class Store(Protocol):
    def attempt(self, keys: Keys, limits: Limits, now: float) -> float:
        """Return the seconds to wait (> 0: refused, nothing counted), or 0 after counting the attempt."""

    def succeeded(self, keys: Keys, limits: Limits, now: float) -> None:
        """Uncount the attempt that succeeded, clear the pair's backoff and remember the network as known."""

    def incr(self, key: str) -> int:
        """Increment a counter."""


# -- Redis -----------------------------------------------------------------------------------------------

_ATTEMPT = """
local now = tonumber(ARGV[1])
local free, base, maxb, pair_reset = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local addr_max, addr_win = tonumber(ARGV[6]), tonumber(ARGV[7])
local acct_max, acct_win = tonumber(ARGV[8]), tonumber(ARGV[9])
local known_for, member = tonumber(ARGV[10]), ARGV[11]
local wait = 0
local n = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
local t = tonumber(redis.call('HGET', KEYS[1], 't') or '0')
if n > 0 and now - t >= pair_reset then n = 0 end
if n >= free then wait = math.max(wait, t + math.min(base * 2 ^ (n - free), maxb) - now) end
local an = tonumber(redis.call('HGET', KEYS[2], 'n') or '0')
local as = tonumber(redis.call('HGET', KEYS[2], 's') or '0')
if now - as >= addr_win then an = 0; as = now end
if an >= addr_max then wait = math.max(wait, as + addr_win - now) end
local cn = tonumber(redis.call('HGET', KEYS[3], 'n') or '0')
local cs = tonumber(redis.call('HGET', KEYS[3], 's') or '0')
if now - cs >= acct_win then cn = 0; cs = now end
if cn >= acct_max then
  local seen = redis.call('ZSCORE', KEYS[4], member)
  if not seen or tonumber(seen) < now - known_for then wait = math.max(wait, cs + acct_win - now) end
end
if wait > 0 then return tostring(wait) end
redis.call('HSET', KEYS[1], 'n', n + 1, 't', now)
redis.call('PEXPIRE', KEYS[1], math.ceil((pair_reset + maxb) * 1000))
redis.call('HSET', KEYS[2], 'n', an + 1, 's', as)
redis.call('PEXPIRE', KEYS[2], math.ceil(addr_win * 1000))
redis.call('HSET', KEYS[3], 'n', cn + 1, 's', cs)
redis.call('PEXPIRE', KEYS[3], math.ceil(acct_win * 1000))
return '0'
"""

_SUCCEEDED = """
local now, known_for, member = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
redis.call('DEL', KEYS[1])
for i = 2, 3 do
  if tonumber(redis.call('HGET', KEYS[i], 'n') or '0') > 0 then redis.call('HINCRBY', KEYS[i], 'n', -1) end
end
redis.call('ZADD', KEYS[4], now, member)
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', '(' .. tostring(now - known_for))
redis.call('PEXPIRE', KEYS[4], math.ceil(known_for * 1000))
return 1
"""


class RedisStore:
    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._attempt = client.register_script(_ATTEMPT)
        self._succeeded = client.register_script(_SUCCEEDED)

    def attempt(self, keys: Keys, limits: Limits, now: float) -> float:
        args: list[str | int] = [
            repr(now),
            limits.free_failures,
            repr(limits.backoff_base),
            repr(limits.backoff_max),
            repr(limits.pair_reset),
            limits.address_max,
            repr(limits.address_window),
            limits.account_max,
            repr(limits.account_window),
            repr(limits.known_for),
            keys.network,
        ]
        result = self._attempt(keys=[keys.pair, keys.address, keys.account, keys.known], args=args)
        return float(result)

    def succeeded(self, keys: Keys, limits: Limits, now: float) -> None:
        all_keys = [keys.pair, keys.address, keys.account, keys.known]
        self._succeeded(keys=all_keys, args=[repr(now), repr(limits.known_for), keys.network])

    def incr(self, key: str) -> int:
        return int(self._client.incr(key))  # type: ignore[arg-type]


# -- in process (the embedded mode, or Redis unreachable) ------------------------------------------------


class MemoryStore:
    """The same arithmetic in one process. Entries are dropped once nothing could still depend on them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pairs: dict[str, tuple[int, float]] = {}
        self._windows: dict[str, tuple[int, float]] = {}
        self._known: dict[str, dict[str, float]] = {}
        self.counters: dict[str, int] = {}

    def attempt(self, keys: Keys, limits: Limits, now: float) -> float:
        with self._lock:
            self._prune(limits, now)
            wait = 0.0
            n, t = self._pairs.get(keys.pair, (0, 0.0))
            if n > 0 and now - t >= limits.pair_reset:
                n = 0
            if n >= limits.free_failures:
                backoff = min(limits.backoff_base * 2 ** (n - limits.free_failures), limits.backoff_max)
                wait = max(wait, t + backoff - now)
            an, as_ = self._window(keys.address, limits.address_window, now)
            if an >= limits.address_max:
                wait = max(wait, as_ + limits.address_window - now)
            cn, cs = self._window(keys.account, limits.account_window, now)
            if cn >= limits.account_max:
                seen = self._known.get(keys.known, {}).get(keys.network)
                if seen is None or seen < now - limits.known_for:
                    wait = max(wait, cs + limits.account_window - now)
            if wait > 0:
                return wait
            self._pairs[keys.pair] = (n + 1, now)
            self._windows[keys.address] = (an + 1, as_)
            self._windows[keys.account] = (cn + 1, cs)
            return 0.0

    def succeeded(self, keys: Keys, limits: Limits, now: float) -> None:
        with self._lock:
            self._pairs.pop(keys.pair, None)
            for key in (keys.address, keys.account):
                n, start = self._windows.get(key, (0, now))
                if n > 0:
                    self._windows[key] = (n - 1, start)
            known = self._known.setdefault(keys.known, {})
            known[keys.network] = now
            for network, seen in list(known.items()):
                if seen < now - limits.known_for:
                    del known[network]

    def incr(self, key: str) -> int:
        with self._lock:
            self.counters[key] = self.counters.get(key, 0) + 1
            return self.counters[key]

    def _window(self, key: str, window: float, now: float) -> tuple[int, float]:
        n, start = self._windows.get(key, (0, now))
        return (0, now) if now - start >= window else (n, start)

    def _prune(self, limits: Limits, now: float) -> None:
        if len(self._pairs) + len(self._windows) < 10_000:
            return
        horizon = limits.pair_reset + limits.backoff_max
        self._pairs = {k: v for k, v in self._pairs.items() if now - v[1] < horizon}
        longest = max(limits.address_window, limits.account_window)
        self._windows = {k: v for k, v in self._windows.items() if now - v[1] < longest}


_memory = MemoryStore()


def _store() -> Store:
    return RedisStore(get_redis()) if get_settings().redis_url else _memory


def _digest(kind: str, value: str) -> str:
    # Keyed, so the keys reveal neither e-mails nor addresses to someone reading Redis without the secret.
    key = get_settings().secret_key.encode()
    return hmac.new(key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:32]


def network_of(address: str | None) -> str:
    """The network an address stands for: an IPv4 address, or an IPv6 /64 (one household or office)."""
    if not address:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return address.strip()[:100] or "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def keys_for(address: str | None, email: str) -> Keys:
    """The Redis keys for an attempt from `address` on the account named `email`."""
    prefix = get_settings().redis_key_prefix
    account = _digest("account", email.strip().lower())
    network = _digest("network", network_of(address))
    return Keys(
        pair=f"{prefix}:login:pair:{account}:{network}",
        address=f"{prefix}:login:addr:{network}",
        account=f"{prefix}:login:acct:{account}",
        known=f"{prefix}:login:known:{account}",
        network=network,
    )


def check_attempt(address: str | None, email: str, *, now: float | None = None) -> int:
    """Count a login attempt and return 0, or return the whole seconds to wait before one is allowed."""
    keys = keys_for(address, email)
    limits = Limits.from_settings(get_settings())
    moment = time.time() if now is None else now
    try:
        wait = _store().attempt(keys, limits, moment)
    except redis.RedisError:
        # Throttling must not take logins down with Redis: fall back to this process's own counts.
        logger.warning("login throttle: Redis unavailable, counting in process")
        wait = _memory.attempt(keys, limits, moment)
    return max(1, math.ceil(wait)) if wait > 0 else 0


def record_success(address: str | None, email: str, *, now: float | None = None) -> None:
    """Uncount a successful attempt and remember its network as one the account signs in from."""
    keys = keys_for(address, email)
    limits = Limits.from_settings(get_settings())
    moment = time.time() if now is None else now
    try:
        _store().succeeded(keys, limits, moment)
    except redis.RedisError:
        logger.warning("login throttle: Redis unavailable, counting in process")
        _memory.succeeded(keys, limits, moment)


def breach_key(kind: str) -> str:
    """The counter of refusals of `kind` (e.g. "login"): `<prefix>:metrics:rate_limited:<kind>`."""
    return f"{get_settings().redis_key_prefix}:metrics:rate_limited:{kind}"


def record_breach(kind: str) -> None:
    """Count one throttle breach of `kind` (INCR of `breach_key(kind)`); never fails the request."""
    key = breach_key(kind)
    try:
        _store().incr(key)
    except redis.RedisError:
        logger.warning("login throttle: Redis unavailable, breach counted in process")
        _memory.incr(key)


def breach_count(kind: str) -> int:
    """How many breaches of `kind` were counted (Redis, or this process without Redis)."""
    key = breach_key(kind)
    if get_settings().redis_url:
        value = get_redis().get(key)
        return int(value) if value else 0  # type: ignore[arg-type]
    return _memory.counters.get(key, 0)
