"""Integration fixtures: the REST API served for real, for tests whose requests must run concurrently."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from backend.api.app import api
from tests.conftest import free_port


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    """The API served by uvicorn on 127.0.0.1 for the whole module (TestClient would run requests one by one)."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(api, host="127.0.0.1", port=port, log_level="warning", lifespan="off", access_log=False)
    )
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=20)
