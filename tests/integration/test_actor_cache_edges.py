"""Edges of the bearer-token actor cache and of the one-statement booking, found by review: each test here failed
before its fix (backend/identity/actor_cache.py, backend/scheduling/booking.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from backend.api.app import api
from backend.db import UnitOfWork
from backend.identity import actor_cache, security
from backend.identity import service as identity
from backend.identity.models import User
from backend.redis_client import get_redis
from backend.settings import get_settings
from tests.factories import Practice, add_availability, bearer, make_practice


@pytest.fixture(autouse=True)
def keys(own_redis_keys: str) -> str:
    return own_redis_keys


@pytest.fixture
def client() -> Iterator[TestClient]:
    actor_cache.clear()
    with TestClient(api, follow_redirects=False) as c:
        yield c


@pytest.fixture
def harbor(db: sa.Engine) -> Practice:
    return make_practice("Harbor Mental Health", "harbor")


def _sid(headers: dict[str, str]) -> uuid.UUID:
    return uuid.UUID(security.decode_access_token(headers["Authorization"].removeprefix("Bearer "))["sid"])


def test_a_rolled_back_savepoint_does_not_forget_the_outer_transactions_auth_change(
    client: TestClient, harbor: Practice
) -> None:
    """A unit of work deactivates a user, then an optional step in a savepoint fails (the pattern of
    backend/observability/metrics.py `_on_offer_accepted`) and the unit of work commits. `after_rollback` fires for
    the savepoint too, and `_forget_marks` drops every mark of the session: the deactivation commits with no bump,
    and the cached token keeps working for up to MAX_AGE_SECONDS."""
    headers = bearer(client, harbor.doctor_user.email)
    assert client.get("/api/v1/clinics", headers=headers).status_code == 200  # cached now
    with UnitOfWork(harbor.system) as uow:
        user = uow.session.get(User, harbor.doctor_user.id)
        assert user is not None
        user.is_active = False
        uow.session.add(user)
        uow.flush()
        try:
            with uow.session.begin_nested():
                raise RuntimeError("an optional step failed")
        except RuntimeError:
            pass
        uow.commit()
    with UnitOfWork(harbor.system) as uow:  # the deactivation did commit: only the cache still admits the token
        committed = uow.session.get(User, harbor.doctor_user.id)
        assert committed is not None and committed.is_active is False
    assert client.get("/api/v1/clinics", headers=headers).status_code == 401


def test_a_generation_that_redis_lost_does_not_revive_a_revoked_token(client: TestClient, harbor: Practice) -> None:
    """Generations are counters read as "0" when their key is missing, and Redis loses keys (a restart without
    persistence, a failover, an eviction). A backend that cached a token while the keys were missing, and then missed
    the revocation's bump (it ran in another backend), finds its generations again after the next loss: a revoked
    token works again (until MAX_AGE_SECONDS). Simulated here: this process's cache entry is kept as that other
    backend would hold it."""
    headers = bearer(client, harbor.doctor_user.email)
    prefix = get_settings().redis_key_prefix
    lost = (f"{prefix}:authgen:{harbor.tenant.id}", f"{prefix}:authgen:global")
    get_redis().delete(*lost)  # Redis restarted
    assert client.get("/api/v1/clinics", headers=headers).status_code == 200  # cached
    sid = _sid(headers)
    other_backend = actor_cache._entries[sid]  # what a second backend process holds
    actor = identity.session_from_token(headers["Authorization"].removeprefix("Bearer ")).actor
    identity.end_api_session(actor, sid)  # revoked and committed in this backend: the generation moves
    assert actor_cache.generations(harbor.tenant.id) != other_backend.generations
    actor_cache.put(sid, other_backend)  # the other backend never ran the bump locally
    get_redis().delete(*lost)  # Redis restarts again
    assert client.get("/api/v1/clinics", headers=headers).status_code == 401


def test_a_doctor_who_may_not_book_is_told_so_before_the_input_is_checked(client: TestClient, harbor: Practice) -> None:
    """Before d2b0018 the permission check came first (403 for a doctor whatever the body); now a start without a
    time zone offset is refused with 422 before the permission check (book_appointment calls `_aware` and reads the
    booking context before `_patient_for`)."""
    add_availability(harbor, 0, 1, 2, 3, 4, 5, 6)
    headers = bearer(client, harbor.doctor_user.email)
    naive = "2027-01-05T10:00:00"  # no offset
    body = {"provider_id": str(harbor.provider.id), "start": naive, "patient_id": str(harbor.patient.id)}
    response = client.post("/api/v1/appointments", json=body, headers=headers)
    assert response.status_code == 403, response.text


def test_someone_else_signing_in_keeps_the_practices_cached_tokens(client: TestClient, harbor: Practice) -> None:
    """Performance, not security: a sign-in writes `users.last_login_at` (and with TOTP `users.mfa_last_step`),
    columns no token's answer depends on, yet they are not in `_HARMLESS`, so every sign-in anywhere in the
    practice moves its generation and drops every cached token of the practice."""
    headers = bearer(client, harbor.doctor_user.email)
    assert client.get("/api/v1/clinics", headers=headers).status_code == 200
    before = actor_cache.generations(harbor.tenant.id)
    bearer(client, harbor.admin_user.email)  # another person of the practice signs in
    assert actor_cache.generations(harbor.tenant.id) == before
