"""The live-sessions benchmark still speaks Reflex's protocol: a tiny run of bench.live must see its changes.

bench/live.py asserts nothing about time, so a protocol change (a renamed namespace, a new boot event, another
live mechanism) could make it print empty tables without failing. This runs it with 3 headless tabs (doctor A,
whose waitlist changes; another doctor of the same practice; a doctor of another practice) and 2 API changes
(a patient joins doctor A's waitlist; an appointment is cancelled and the slot offered to that patient), then
checks that every change reached doctor A's tab and that neither unrelated tab ever received those rows.

It starts its own server, database and Redis (as the bench does), so it needs no build; run it under the e2e lock:
    flock /tmp/waitwell-e2e.lock .venv/bin/pytest -q tests/e2e/test_bench_live_smoke.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_bench_live_tabs_see_their_changes_and_only_theirs(tmp_path: Path) -> None:
    out = tmp_path / "live.json"
    # The bench makes its own database, Redis and settings: none of this test run's own may leak into it.
    own = ("DATABASE_URL", "SYSTEM_DATABASE_URL", "DATABASE_OWNER_URL", "REDIS_URL", "REDIS_KEY_PREFIX")
    env = {k: v for k, v in os.environ.items() if k not in own}
    result = subprocess.run(
        [sys.executable, "-m", "bench.live", "--sessions", "3", "--events", "2", "--no-db-stats", "--json", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if result.returncode != 0:
        pytest.fail(f"bench.live failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    [level] = json.loads(out.read_text())

    assert level["connected"] == level["loaded"] == 3, "every tab connected, hydrated and loaded its page"
    assert level["statuses"] == {"201": 1, "200": 1}, "the join and the cancellation went through the API"
    # Both changes reached doctor A's tab as rows carrying the new data: the joined patient, then their offer.
    assert level["missed"] == 0
    assert len(level["latencies"]) == 2
    # No unrelated tab (another doctor's, another practice's) ever received the changed rows. How many frames of any
    # kind reached them is the bench's figure to print, not this test's to judge.
    assert level["leaks"] == 0, level["unrelated_frame_shapes"]
    assert "sessions" in result.stdout and "p95 ms" in result.stdout
