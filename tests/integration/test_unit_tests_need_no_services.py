"""The unit tests are pure logic: they pass with PostgreSQL and Redis out of reach, and create nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_unit_tests_pass_with_no_database_and_no_redis() -> None:
    env = {
        **os.environ,
        # Port 1: nothing listens there, so any connection attempt fails at once.
        "TEST_POSTGRES_ADMIN_URL": "postgresql://postgres@127.0.0.1:1/postgres",
        "TEST_REDIS_URL": "redis://127.0.0.1:1/0",
        "TEST_BROKER_URL": "redis://127.0.0.1:1/0",
    }
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "SECRET_KEY"):
        env.pop(name, None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/unit"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and " failed" not in result.stdout
