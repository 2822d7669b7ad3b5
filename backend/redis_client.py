"""The shared Redis client (only when REDIS_URL is configured)."""

from __future__ import annotations

from functools import lru_cache

import redis

from backend.settings import get_settings


@lru_cache
def get_redis() -> redis.Redis:
    """Return the process-wide Redis client; raise if Redis is not configured."""
    url = get_settings().redis_url
    if not url:
        raise RuntimeError("REDIS_URL is not configured")
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2, health_check_interval=30)
