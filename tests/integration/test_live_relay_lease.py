"""The live relay's lease (portal/live_bridge.py) lives under REDIS_KEY_PREFIX: two deployments, or two test runs,
sharing one Redis each elect their own relaying worker instead of one taking the other's, and within one
deployment only one worker holds it (real Redis)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio as aioredis

from backend.settings import get_settings
from portal import live_bridge
from tests.conftest import REDIS_URL


def _lease_under(prefix: str, monkeypatch: pytest.MonkeyPatch) -> live_bridge._Lease:
    monkeypatch.setattr(get_settings(), "redis_key_prefix", prefix)
    return live_bridge._Lease(aioredis.Redis.from_url(REDIS_URL))


def test_deployments_sharing_one_redis_each_hold_their_own_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = f"test-{uuid.uuid4().hex}", f"test-{uuid.uuid4().hex}"
    leases = {
        "first": _lease_under(first, monkeypatch),
        "first, another worker": _lease_under(first, monkeypatch),
        "second": _lease_under(second, monkeypatch),
    }
    assert leases["first"].key == f"{first}:live:relay-leader"
    assert leases["second"].key == f"{second}:live:relay-leader"

    async def scenario() -> dict[str, bool]:
        try:
            for lease in leases.values():
                await lease.renew()
            held = {name: lease.held for name, lease in leases.items()}
            # The first deployment's holder leaves: its other worker takes over; the second deployment is untouched.
            await leases["first"].release()
            await leases["first, another worker"].renew()
            await leases["second"].renew()
            held["taken over"] = leases["first, another worker"].held
            held["second still"] = leases["second"].held
            return held
        finally:
            for lease in leases.values():
                await lease.release()
                await lease.client.aclose()

    held = asyncio.run(scenario())
    assert held == {
        "first": True,
        "first, another worker": False,
        "second": True,
        "taken over": True,
        "second still": True,
    }
