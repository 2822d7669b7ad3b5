"""Integration fixtures: the REST API served for real, for tests whose requests must run concurrently."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import uvicorn

from backend.api.app import api
from backend.redis_client import get_redis
from backend.settings import get_settings
from tests.conftest import free_port, served


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    """The API served by uvicorn on 127.0.0.1 for the whole module (TestClient would run requests one by one)."""
    config = uvicorn.Config(
        api, host="127.0.0.1", port=free_port(), log_level="warning", lifespan="off", access_log=False
    )
    with served(config) as url:
        yield url


@pytest.fixture
def own_redis_keys(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """This test's own Redis key prefix (login throttle, rate limits), so no other test or run meets its keys;
    the keys are deleted afterwards."""
    prefix = f"test-{uuid.uuid4().hex}"
    monkeypatch.setattr(get_settings(), "redis_key_prefix", prefix)
    yield prefix
    keys = list(get_redis().scan_iter(f"{prefix}:*"))
    if keys:
        get_redis().delete(*keys)
