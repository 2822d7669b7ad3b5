"""The arithmetic of login throttling (no database)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from backend.identity import service as identity
from backend.identity.models import User
from backend.settings import Settings

NOW = datetime(2026, 3, 8, 12, 0, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(
        _env_file=None,
        secret_key="s" * 40,
        login_free_failures=5,
        login_backoff_base_seconds=2.0,
        login_backoff_max_seconds=300.0,
    )
    monkeypatch.setattr(identity, "get_settings", lambda: settings)
    monkeypatch.setattr(identity, "utcnow", lambda: NOW)


def _user(failures: int, seconds_ago: float | None) -> User:
    return User(
        tenant_id=uuid.uuid4(),
        email="x@example.test",
        full_name="X",
        password_hash="x",
        failed_login_count=failures,
        last_failed_login_at=None if seconds_ago is None else NOW - timedelta(seconds=seconds_ago),
    )


@pytest.mark.parametrize("failures", [0, 1, 4])
def test_free_failures_never_wait(failures: int) -> None:
    assert identity._login_wait_seconds(_user(failures, 0)) == 0


@pytest.mark.parametrize(
    ("failures", "expected"),
    [(5, 2), (6, 4), (7, 8), (8, 16), (12, 256), (13, 300), (40, 300)],
)
def test_backoff_doubles_from_the_free_limit_and_is_capped(failures: int, expected: int) -> None:
    assert identity._login_wait_seconds(_user(failures, 0)) == expected


def test_wait_counts_down_from_the_last_failure_and_rounds_up() -> None:
    assert identity._login_wait_seconds(_user(6, 1.5)) == 3  # 4 s backoff, 2.5 s left -> 3
    assert identity._login_wait_seconds(_user(6, 3.99)) == 1
    assert identity._login_wait_seconds(_user(6, 4)) == 0
    assert identity._login_wait_seconds(_user(6, 3600)) == 0


def test_no_recorded_failure_time_means_no_wait() -> None:
    assert identity._login_wait_seconds(_user(9, None)) == 0
