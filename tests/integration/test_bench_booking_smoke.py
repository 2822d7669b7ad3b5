"""bench.booking still runs end to end with either load client, and leaves nothing behind.

The bench asserts nothing about time; this runs it at a tiny scale (3 providers, one level of 2 connections) and
checks that every row it prints went through without an error (a 409 there would be a double-booked plan, a 401
a broken sign-in), and that its database and its Redis keys are gone afterwards. The wrk client is Debian's
`wrk`, which `make chromium` installs.
    .venv/bin/pytest -q tests/integration/test_bench_booking_smoke.py
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import redis

ROOT = Path(__file__).resolve().parents[2]
ADMIN_URL = os.environ.get("TEST_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BENCH_REDIS = "redis://127.0.0.1:6379/3"
ROW = re.compile(r"^(?P<label>[a-z][a-z ()A-Z,]+?)\s+2\s+(?P<n>\d+)\s+\d+\s.*?(?:statuses (?P<statuses>\{[^}]*\})|"
                 r"errors (?P<errors>\d+))", re.M)  # fmt: skip


def _bench(*args: str) -> tuple[str, dict[str, re.Match[str]]]:
    own = ("DATABASE_URL", "SYSTEM_DATABASE_URL", "DATABASE_OWNER_URL", "REDIS_URL", "REDIS_KEY_PREFIX",
           "CELERY_BROKER_URL", "CELERY_EAGER", "SECRET_KEY")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in own}
    env["BENCH_REDIS_URL"] = BENCH_REDIS
    result = subprocess.run(
        [sys.executable, "-m", "bench.booking", "--providers", "3", "--levels", "2", "--floor", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    if result.returncode != 0:
        pytest.fail(f"bench.booking failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    database = re.search(r"database (bench_\d+_[0-9a-f]+)", result.stdout)
    assert database, result.stdout[-2000:]
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database.group(1),)).fetchone() is None
    assert not list(redis.Redis.from_url(BENCH_REDIS).scan_iter(match=f"bench-{database.group(1)}:*"))
    return result.stdout, {m.group("label"): m for m in ROW.finditer(result.stdout)}


def test_the_wrk_client_books_and_searches_without_errors() -> None:
    out, rows = _bench("--client", "wrk", "--seconds", "1", "--requests", "20")
    assert set(rows) == {"floor (GET health)", "book (POST, wrk)", "search cached (wrk)", "search uncached (wrk)"}, out
    for label, row in rows.items():
        assert int(row.group("n")) > 0 and row.group("errors") == "0", (label, out)
    # The uncached row's keys were dropped while it ran (the cached row just before had filled them).
    missed = re.search(r"^search uncached \(wrk\).*; (\d+)% of the cache lookups missed$", out, re.M)
    assert missed and int(missed.group(1)) > 0, out


def test_the_httpx_client_books_and_searches_without_errors() -> None:
    out, rows = _bench("--requests", "20")
    expected = {"floor (GET health)": "{200: 20}", "book (POST)": "{201: 20}", "search cached": "{200: 10}",
                "search uncached": "{200: 10}"}  # fmt: skip
    assert {label: row.group("statuses") for label, row in rows.items()} == expected, out
