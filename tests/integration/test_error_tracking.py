"""Error tracking (SENTRY_DSN): an unhandled error reaches the Sentry-compatible endpoint with its exception type and
frames and the request id, and without any health data: the security suite's canary goes into the request's body,
query string, cookie and Authorization header and into the exception's message, and into none of what is sent.

The app runs in a child process (the SDK patches logging, threads and the web framework process-wide); the endpoint
is a local recording server standing in for Sentry.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from typing import Any

import pytest

from backend.observability.redaction import REDACTED
from backend.observability.sentry import scrub_event
from backend.settings import PROJECT_ROOT
from tests.recording_server import RecordedRequest, RecordingServer

CANARY = "CANARY-PHI-7f3a"  # as tests/security/test_no_phi_in_logs.py

# The child: the real app (configure_logging() starts the SDK at import), one route that fails with the canary in
# its message, one request carrying the canary everywhere a client can put it.
CHILD = """
import asyncio, logging, sys
import httpx, sentry_sdk
from fastapi import Request
from backend.api.app import api

canary = sys.argv[1]

@api.post("/api/test-boom")
async def boom(request: Request) -> None:
    body = await request.json()
    logging.getLogger("backend.test").warning("about to fail")
    raise RuntimeError(f"could not place {body['reason']}")

async def main() -> None:
    transport = httpx.ASGITransport(app=api, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.post(
            f"/api/test-boom?q={canary}",
            json={"reason": f"{canary} panic attacks"},
            headers={"Authorization": f"Bearer {canary}", "Cookie": f"session={canary}", "X-Request-ID": "sentry-1"},
        )
    print("STATUS", response.status_code, response.headers.get("x-request-id"))

asyncio.run(main())
sentry_sdk.flush(timeout=20)
"""


def envelope_body(request: RecordedRequest) -> bytes:
    """The envelope as sent: the SDK compresses it with brotli when the `brotli` package is installed (the load
    bench's locust brings it into the dev venv), else with gzip."""
    encoding = request.headers.get("content-encoding")
    assert encoding in (None, "gzip", "br"), encoding
    if encoding == "br":
        import brotli  # type: ignore[import-untyped]

        return bytes(brotli.decompress(request.body))
    return gzip.decompress(request.body) if encoding == "gzip" else request.body


def envelope_items(request: RecordedRequest) -> list[tuple[dict[str, Any], Any]]:
    lines = envelope_body(request).split(b"\n")
    items = []
    for header, payload in zip(lines[1::2], lines[2::2], strict=False):
        items.append((json.loads(header), json.loads(payload) if payload.startswith(b"{") else payload))
    return items


def test_an_unhandled_error_reaches_sentry_without_health_data() -> None:
    with RecordingServer() as server:
        host = server.url.removeprefix("http://")
        env = {**os.environ, "SENTRY_DSN": f"http://publickey@{host}/1", "SENTRY_ENVIRONMENT": "test"}
        child = subprocess.run(
            [sys.executable, "-c", CHILD, CANARY], cwd=PROJECT_ROOT, env=env, capture_output=True, timeout=120
        )
        output = child.stdout.decode() + child.stderr.decode()
        assert child.returncode == 0, output[-4000:]
        assert "STATUS 500 sentry-1" in output
        sent = server.requests_to("POST", r"/api/1/envelope/")
    assert sent, output[-4000:]
    events = [payload for r in sent for header, payload in envelope_items(r) if header.get("type") == "event"]
    (error,) = [e for e in events if e.get("exception")]
    (exception,) = [x for x in error["exception"]["values"] if x["type"] == "RuntimeError"]
    assert exception["value"] == REDACTED
    frames = exception["stacktrace"]["frames"]
    assert any(f.get("function") == "boom" for f in frames) and all("vars" not in f for f in frames)
    assert error["tags"]["request_id"] == "sentry-1"
    assert error["environment"] == "test"
    request = error.get("request", {})
    assert "data" not in request and "cookies" not in request and "query_string" not in request
    assert {k.lower() for k in request.get("headers", {})} <= {"accept", "content-type", "content-length", "host",
                                                                "user-agent", "x-request-id"}  # fmt: skip
    everything = b"".join(envelope_body(r) for r in sent).decode("utf-8", "replace")
    assert CANARY not in everything
    assert CANARY not in output  # nor in the child's own log lines


def test_scrub_event_keeps_types_and_frames_and_drops_the_rest() -> None:
    event: dict[str, Any] = {
        "request": {"method": "POST", "url": f"http://h/api/v1/unsubscribe/{CANARY}?q={CANARY}",
                    "query_string": f"q={CANARY}", "data": {"reason": CANARY}, "cookies": {"s": CANARY},
                    "headers": {"Authorization": f"Bearer {CANARY}", "Cookie": CANARY, "User-Agent": "ua"}},
        "exception": {"values": [{"type": "ValueError", "value": f"bad {CANARY}",
                                  "stacktrace": {"frames": [{"function": "f", "vars": {"reason": CANARY}}]}}]},
        "threads": {"values": [{"stacktrace": {"frames": [{"function": "g", "vars": {"x": CANARY}}]}}]},
        "logentry": {"message": "could not place %s", "params": [CANARY], "formatted": f"could not place {CANARY}"},
        "breadcrumbs": {"values": [{"category": "httplib", "data": {"url": f"http://x/y?q={CANARY}", "body": CANARY}}]},
        "extra": {"celery-job": {"task_name": "t", "args": [CANARY], "kwargs": {"r": CANARY}}, "sys.argv": [CANARY]},
        "user": {"email": CANARY},
    }  # fmt: skip
    scrubbed = scrub_event(event)
    assert CANARY not in json.dumps(scrubbed)
    assert scrubbed["exception"]["values"][0]["type"] == "ValueError"
    assert scrubbed["exception"]["values"][0]["stacktrace"]["frames"] == [{"function": "f"}]
    assert scrubbed["request"]["headers"] == {"User-Agent": "ua"}
    assert scrubbed["request"]["url"].startswith("http://h/api/v1/unsubscribe/")
    assert scrubbed["logentry"] == {"message": "could not place %s"}
    assert scrubbed["extra"]["celery-job"] == {"task_name": "t"}


@pytest.mark.parametrize("dsn", ["", "   "])
def test_error_tracking_is_off_without_a_dsn(dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from backend.observability.sentry import init_sentry
    from backend.settings import LogSettings

    monkeypatch.setenv("SENTRY_DSN", dsn)
    assert init_sentry(LogSettings()) is False
