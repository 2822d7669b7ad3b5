"""The served app (Reflex backend, production build) writes JSON log lines with request ids: configured at import
in the process that serves (granian's workers), the API inside it, and the edge's refusals outside it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from backend.seed import DEMO_PASSWORD
from tests.e2e.test_portal import sign_in
from tests.worker_process import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def app_log(app_url: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The served app's stdout and stderr (tests/e2e/conftest.py `app_url` writes them to <basetemp>/app<n>/app.log)."""
    (log,) = tmp_path_factory.getbasetemp().glob("app[0-9]*/app.log")
    return log


def access_line(log: Path, request_id: str) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("{") and f'"{request_id}"' in line:
                record = json.loads(line)
                if record.get("logger") == "backend.access" and record.get("request_id") == request_id:
                    return dict(record)
        return None

    return wait_for(f"the access line of {request_id}", find, seconds=20, log=log)


def test_the_served_app_logs_json_access_lines_with_the_echoed_request_id(app_url: str, app_log: Path) -> None:
    with httpx.Client(base_url=app_url, timeout=30) as client:
        api = client.get("/api/health", headers={"X-Request-ID": "e2e-api-1"})
        page = client.get("/login/", headers={"X-Request-ID": "e2e-page-1"})
        refused = client.post("/auth/logout", headers={"X-Request-ID": "e2e-edge-1", "Origin": "https://evil.example"})
    assert (api.status_code, api.headers["X-Request-ID"]) == (200, "e2e-api-1")
    assert (page.status_code, page.headers["X-Request-ID"]) == (200, "e2e-page-1")
    assert (refused.status_code, refused.headers["X-Request-ID"]) == (403, "e2e-edge-1")
    line = access_line(app_log, "e2e-api-1")
    assert (line["route"], line["status"], line["method"]) == ("/api/health", 200, "GET")
    assert access_line(app_log, "e2e-page-1")["status"] == 200
    assert access_line(app_log, "e2e-edge-1")["status"] == 403


def test_signing_in_leaves_no_address_or_password_in_the_log(page: Page, app_url: str, app_log: Path) -> None:
    sign_in(page, app_url, "alice@harbor.example")
    expect(page).to_have_url(re.compile(r"/patient/?$"))
    text = app_log.read_text(errors="replace")
    assert "alice@harbor.example" not in text and DEMO_PASSWORD not in text
