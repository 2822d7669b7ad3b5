"""The page bench still finds what it times: a tiny bench.pages must see each page's content and its state events.

bench/pages.py asserts nothing about time, and it recognises a page's content by selectors (a slot of the provider's
week, a row of the waitlist console) and its state events by buttons and filters: a changed page could leave it
printing dashes or notes instead of figures. This runs it on two pages with a state event each (the provider's week,
the doctor's console), once each and three clicks, and checks that every figure was taken.

It benches the e2e suite's own app (`--url`, the demo data): a second production build in the same checkout would
rewrite the `.web` the suite's server is serving, under every later test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_bench_pages_times_content_navigation_and_events(tmp_path: Path, app_url: str) -> None:
    out = tmp_path / "pages.json"
    own = ("DATABASE_URL", "SYSTEM_DATABASE_URL", "DATABASE_OWNER_URL", "REDIS_URL", "REDIS_KEY_PREFIX",
           "CELERY_BROKER_URL")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in own}
    result = subprocess.run(
        [sys.executable, "-m", "bench.pages", "--url", app_url, "--only", "/patient/provider,/doctor/waitlist",
         "--loads", "1", "--clicks", "3", "--json", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    if result.returncode != 0:
        pytest.fail(f"bench.pages failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    rows = {row["path"]: row for row in json.loads(out.read_text())}

    assert set(rows) == {"/patient/provider/{rivera}", "/doctor/waitlist"}
    for path, row in rows.items():
        assert row["notes"] == [], (path, row["notes"])
        assert len(row["first"]) == 1 and len(row["warm"]) == 1, path
        assert len(row["events"]) == 3, path
        # The server answered each event: the browser saw a state delta for it.
        assert all(ms > 0 for ms in row["event_server"]), path
    assert "first load ms" in result.stdout and "status filter" in result.stdout
