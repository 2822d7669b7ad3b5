"""The load test still runs end to end: a tiny bench.load must seed, serve, play its whole mix and report.

bench/load asserts nothing about time, so a changed route, body or status could make its users fail quietly, or
the runner print an empty table. This runs it at a tiny scale (300 patients, 10 providers, a month of history; two
short steps of 5 and 10 users with little think time) and checks that every kind of request the mix makes for the
people it played went through without an error, and that the report names the highest step.

It starts its own server, Celery worker, database and Redis, and builds nothing:
    .venv/bin/pytest -q tests/e2e/test_bench_load_smoke.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_bench_load_plays_the_mix_without_errors(tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    own = ("DATABASE_URL", "SYSTEM_DATABASE_URL", "DATABASE_OWNER_URL", "REDIS_URL", "REDIS_KEY_PREFIX",
           "CELERY_BROKER_URL", "CELERY_EAGER")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in own}
    result = subprocess.run(
        [sys.executable, "-m", "bench.load", "--patients", "300", "--providers", "10", "--history-days", "30",
         "--waiting", "60", "--steps", "5,10", "--step-seconds", "12", "--warmup", "2", "--think", "0.2,0.6",
         "--json", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    if result.returncode != 0:
        pytest.fail(f"bench.load failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    figures = json.loads(out.read_text())

    assert figures["seeded"]["patients"] == 300 and figures["seeded"]["appointments"] > 1000
    assert [s["users"] for s in figures["steps"]] == [5, 10], "both steps ran"
    requests = {name: v for step in figures["steps"] for name, v in step["by_name"].items()}
    # The patients' reads and writes, the doctors' console and the admins' oversight all went through.
    for name in ("providers (search)", "providers/{id}/slots (week)", "appointments (list)", "appointments (book)",
                 "waitlists (join)", "offers (mine)"):  # fmt: skip
        assert name in requests, f"no {name} request in {sorted(requests)}"
    assert sum(step["errors"] for step in figures["steps"]) == 0, [s["statuses"] for s in figures["steps"]]
    assert figures["server_tracebacks"] == 0
    assert figures["best"] is not None and "highest step meeting" in result.stdout
