"""Automatic logoff: a session unused by its person for its idle timeout ends, in the browser and in the API.

The idle clock is moved by the test (backend.identity.idle.clock_now), never slept on. Redis is the real one, under
this test's own key prefix.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy import event

from backend.api.app import api
from backend.audit.models import AuditEvent
from backend.db import get_engine, get_system_engine
from backend.identity import idle, security
from backend.identity.models import UserSession
from backend.identity.service import actor_from_session, check_browser_session, start_session
from backend.redis_client import get_redis
from backend.settings import get_settings
from backend.tenancy.context import Actor
from tests.factories import TEST_PASSWORD, Practice, make_practice, rows


@pytest.fixture(autouse=True)
def redis_keys(own_redis_keys: str) -> str:
    return own_redis_keys


@pytest.fixture
def harbor(db: sa.Engine) -> Practice:
    return make_practice("Harbor Mental Health", "harbor")


class FakeClock:
    def __init__(self, start: float) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds

    def start(self) -> None:
        """Start the test's clock now (after the session it is about was created)."""
        self.t = time.time()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock(idle.clock_now())
    monkeypatch.setattr(idle, "clock_now", fake)
    return fake


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(api, follow_redirects=False) as c:
        yield c


class SessionWrites:
    """Counts the UPDATEs of user_sessions the application sends."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE USER_SESSIONS"):
            self.count += 1


@pytest.fixture
def session_writes() -> Iterator[SessionWrites]:
    counter = SessionWrites()
    # Session lookups are system work (the system role's engine); the app's engine is watched too.
    engines = {get_engine(), get_system_engine()}
    for engine in engines:
        event.listen(engine, "before_cursor_execute", counter)
    yield counter
    for engine in engines:
        event.remove(engine, "before_cursor_execute", counter)


def _session_row(practice: Practice, token_or_id: Any) -> UserSession:
    (row,) = [s for s in rows(practice, UserSession) if token_or_id in (s.token_hash, s.id)]
    return row


def _browser(practice: Practice, actor: Actor) -> tuple[str, UserSession]:
    token, _ = start_session(actor)
    return token, _session_row(practice, security.hash_session_token(token))


def test_sessions_get_the_timeout_of_their_role(harbor: Practice) -> None:
    settings = get_settings()
    assert (settings.idle_timeout_staff_seconds, settings.idle_timeout_patient_seconds) == (900, 1800)
    for actor, expected in ((harbor.doctor, 900), (harbor.admin, 900), (harbor.patient_actor, 1800)):
        token, row = _browser(harbor, actor)
        assert row.idle_timeout_seconds == expected
        assert check_browser_session(token).idle_timeout_seconds == expected


def test_a_browser_session_idle_past_its_timeout_is_refused_and_revoked(harbor: Practice, clock: FakeClock) -> None:
    token, row = _browser(harbor, harbor.doctor)
    clock.start()
    assert actor_from_session(token) == harbor.doctor
    clock.advance(899)
    assert actor_from_session(token) == harbor.doctor
    assert check_browser_session(token).idle_seconds_left == 1
    clock.advance(2)
    # A read (a live push, a handler) refuses it and writes nothing.
    assert actor_from_session(token) is None
    assert _session_row(harbor, row.id).revoked_at is None
    # Activity cannot bring it back.
    assert check_browser_session(token, activity=True).actor is None
    # The page's look ends it for good, with its reason and an audit row.
    ended = check_browser_session(token, end_if_idle=True)
    assert ended.actor is None and ended.idle_ended and ended.idle_timeout_seconds == 900
    after = _session_row(harbor, row.id)
    assert after.revoked_at is not None and after.revoked_reason == "idle"
    audits = [a for a in rows(harbor, AuditEvent) if a.action == "user.logoff_idle"]
    assert len(audits) == 1 and audits[0].entity_id == harbor.doctor.user_id
    # Every later look still says why (another tab of the same session shows the same notice).
    assert check_browser_session(token, end_if_idle=True).idle_ended
    assert len([a for a in rows(harbor, AuditEvent) if a.action == "user.logoff_idle"]) == 1


def test_activity_keeps_a_browser_session_alive_and_reads_do_not(harbor: Practice, clock: FakeClock) -> None:
    token, _ = _browser(harbor, harbor.patient_actor)
    for _ in range(5):  # activity every 25 minutes: 2 h 5 min in all, past any single timeout
        clock.advance(1500)
        assert check_browser_session(token).actor is not None  # a look moves nothing
        assert check_browser_session(token, activity=True).actor is not None
    assert check_browser_session(token).idle_seconds_left == 1800
    # Looks alone (live pushes, timers, reconnects) never keep it alive.
    for _ in range(3):
        clock.advance(599)
        assert actor_from_session(token) is not None
    clock.advance(3)  # 1800 s since the last activity
    assert actor_from_session(token) is None


def test_activity_writes_the_database_at_most_once_per_window(
    harbor: Practice, clock: FakeClock, session_writes: SessionWrites
) -> None:
    token, row = _browser(harbor, harbor.doctor)
    assert row.last_seen_at is None
    for _ in range(50):
        clock.advance(10)
        assert check_browser_session(token, activity=True).actor is not None
        assert actor_from_session(token) is not None
    # 100 looks, 50 of them activity: one coarse write (the first activity), none per request.
    assert session_writes.count == 1
    seen = _session_row(harbor, row.id).last_seen_at
    assert seen is not None and abs(seen.timestamp() - (clock.t - 490)) < 1


def test_a_lost_redis_clock_falls_back_to_the_coarse_copy(harbor: Practice, clock: FakeClock) -> None:
    token, row = _browser(harbor, harbor.doctor)
    clock.advance(600)
    assert check_browser_session(token, activity=True).actor is not None  # persisted: last_seen_at = +600
    clock.advance(60)
    assert check_browser_session(token, activity=True).actor is not None  # in Redis only
    get_redis().delete(idle.keys_for(row.id)[0])  # Redis lost it
    # The clock falls back to last_seen_at (+600): idle at +1500, sooner than Redis would have said, never later.
    clock.advance(839)
    assert actor_from_session(token) is not None
    clock.advance(2)
    assert actor_from_session(token) is None


def _login(client: TestClient, email: str) -> dict[str, Any]:
    response = client.post("/api/v1/auth/token", json={"email": email, "password": TEST_PASSWORD})
    assert response.status_code == 200, response.text
    return dict(response.json())


def _me(client: TestClient, tokens: dict[str, Any]) -> Any:
    return client.get("/api/v1/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})


def test_api_requests_are_activity_and_an_idle_session_is_refused(
    client: TestClient, harbor: Practice, clock: FakeClock
) -> None:
    tokens = _login(client, harbor.doctor_user.email)
    for _ in range(4):  # a request every 10 minutes keeps it going past the 15-minute timeout
        clock.advance(600)
        assert _me(client, tokens).status_code == 200
    clock.advance(901)
    response = _me(client, tokens)
    assert response.status_code == 401
    assert response.json()["code"] == "session_idle"
    refreshed = client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 401 and refreshed.json()["code"] == "session_idle"
    (session,) = [s for s in rows(harbor, UserSession) if s.kind == "api"]
    assert session.revoked_reason == "idle" and session.revoked_at is not None


def test_refresh_of_an_idle_session_is_refused_and_refresh_is_not_activity(
    client: TestClient, harbor: Practice, clock: FakeClock
) -> None:
    tokens = _login(client, harbor.patient_user.email)
    clock.advance(1000)
    refreshed = client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200  # 1000 s of the patient's 1800
    tokens = dict(refreshed.json())
    clock.advance(801)  # 1801 s since the last request: the refresh did not count as activity
    refreshed = client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 401
    assert refreshed.json()["code"] == "session_idle"
    assert _me(client, tokens).status_code == 401
