"""Beat exactly once: the Celery beat scheduler sends the schedule's ticks only while it holds a Redis lock.

Every `celery -A backend.worker beat` (and `worker -B`) uses `LockedScheduler` (backend.worker sets
`beat_scheduler`). Before each pass over the schedule it takes the lock `<REDIS_KEY_PREFIX>:beat:leader`, or renews
it if it is its own (TTL LOCK_TTL_SECONDS, renewed at least every RENEW_SECONDS). A second beat, on this machine or
another, finds it held, sends nothing and checks again every STANDBY_SECONDS. It takes over:
- at once when the holder stops cleanly (it releases the lock on the way out);
- at once when the holder ran on the same machine and its process is gone (a crash or SIGKILL, then systemd's
  restart): the lock names its holder's host and process id;
- within LOCK_TTL_SECONDS otherwise (the holder's machine died or lost Redis).
A beat that loses the lock (it stalled past the TTL, Redis was unreachable) stops sending until it holds it again.
The prefix keeps deployments (and test runs) sharing one Redis apart. Without REDIS_URL (the embedded mode, one
machine) there is nothing to coordinate through: beat schedules alone, and says so.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from typing import Any, cast

import redis
from celery.beat import PersistentScheduler

from backend.settings import get_settings

logger = logging.getLogger(__name__)

LOCK_TTL_SECONDS = 30.0
RENEW_SECONDS = 10.0
STANDBY_SECONDS = 5.0

# Compare-and-act on the holder's token, atomically in Redis: only the holder renews or releases; a stale holder's
# lock is replaced only if it is still that holder's.
_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
_REPLACE = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('set', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1 end "
    "return 0"
)


def beat_lock_key() -> str:
    """The lock's Redis key, under REDIS_KEY_PREFIX."""
    return f"{get_settings().redis_key_prefix}:beat:leader"


class BeatLock:
    """The right to send beat's ticks: one holder per key at a time; only the holder renews or releases it."""

    def __init__(self, client: redis.Redis, *, key: str | None = None, ttl: float = LOCK_TTL_SECONDS) -> None:
        self.client = client
        self.key = key or beat_lock_key()
        self.ttl_ms = int(ttl * 1000)
        self.host = socket.gethostname()
        # host|pid|random: unique to this holder, and says where it runs (see _left_by_a_dead_process).
        self.token = f"{self.host}|{os.getpid()}|{uuid.uuid4().hex}"

    def hold(self) -> bool:
        """Take the lock if it is free or its holder is gone, or renew it if it is ours; False while another beat
        holds it (or Redis does not answer)."""
        try:
            if self.client.set(self.key, self.token, nx=True, px=self.ttl_ms):
                return True
            if self.client.eval(_RENEW, 1, self.key, self.token, self.ttl_ms):
                return True
            holder = cast("bytes | None", self.client.get(self.key))  # a sync client: never an awaitable
            if holder is not None and self._left_by_a_dead_process(holder.decode(errors="replace")):
                return bool(self.client.eval(_REPLACE, 1, self.key, holder, self.token, self.ttl_ms))
            return False
        except redis.RedisError:
            logger.warning("beat lock: Redis does not answer; sending no ticks until it does", exc_info=True)
            return False

    def release(self) -> None:
        """Give the lock up if it is ours, so a standing-by beat takes over at once."""
        try:
            self.client.eval(_RELEASE, 1, self.key, self.token)
        except redis.RedisError:
            logger.warning("beat lock: could not release it (it expires by itself)", exc_info=True)

    def _left_by_a_dead_process(self, holder: str) -> bool:
        """The holder ran on this machine and its process no longer exists: no need to wait out the TTL."""
        host, _, rest = holder.partition("|")
        pid = rest.partition("|")[0]
        if host != self.host or not pid.isdigit() or int(pid) == os.getpid():
            return False
        try:
            os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
        except ProcessLookupError:
            return True
        except PermissionError:  # it exists, under another user
            return False
        return False


def make_beat_lock() -> BeatLock | None:
    """The lock on this deployment's Redis (REDIS_URL); None without Redis."""
    url = get_settings().redis_url
    if not url:
        return None
    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2, client_name="waitwell-beat")
    return BeatLock(client)


class LockedScheduler(PersistentScheduler):
    """Celery's PersistentScheduler (the schedule file of --schedule) that sends ticks only while holding BeatLock."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._beat_lock = make_beat_lock()
        self._leading: bool | None = None  # unknown until the first pass
        if self._beat_lock is None:
            logger.warning("beat lock: no REDIS_URL, so nothing stops a second beat from sending every tick twice")
        super().__init__(*args, **kwargs)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """Send what is due while holding the lock; otherwise stand by and try again in STANDBY_SECONDS."""
        if self._beat_lock is None:
            return float(super().tick(*args, **kwargs))
        leading = self._beat_lock.hold()
        if leading != self._leading:
            if leading:
                logger.info("beat lock: held (%s); sending the schedule's ticks", self._beat_lock.key)
            else:
                logger.info("beat lock: another beat holds %s; standing by", self._beat_lock.key)
            self._leading = leading
        if not leading:
            return STANDBY_SECONDS
        return min(float(super().tick(*args, **kwargs)), RENEW_SECONDS)

    def close(self) -> None:
        """Save the schedule, then release the lock (a clean stop hands over at once)."""
        try:
            super().close()
        finally:
            if self._beat_lock is not None:
                self._beat_lock.release()
                self._leading = None
