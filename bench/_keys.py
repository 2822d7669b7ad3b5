"""The Redis keys a bench's app wrote under its own REDIS_KEY_PREFIX: removed when the bench ends (only those;
other runs share this Redis)."""

from __future__ import annotations

import contextlib


def forget_keys(redis_url: str, prefix: str) -> int:
    """Delete every key named `<prefix>:...`; how many there were. Never fails the bench."""
    import redis

    with contextlib.suppress(redis.RedisError):
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
        return len(keys)
    return 0
