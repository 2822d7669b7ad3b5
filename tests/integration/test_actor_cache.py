"""A bearer token's actor is remembered between requests (no database round trip), and forgotten as soon as anything
that could change it commits, in this process or any other (backend/identity/actor_cache.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import col, select, update

from backend.api.app import api
from backend.db import UnitOfWork, get_engine
from backend.identity import actor_cache, security
from backend.identity import service as identity
from backend.identity.models import Membership, User, UserSession
from backend.redis_client import get_redis
from backend.settings import get_settings
from backend.tenancy.context import Role
from backend.types import utcnow
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


class _Statements:
    """The SQL the app's engine sends while the block runs."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __enter__(self) -> _Statements:
        sa.event.listen(get_engine(), "before_cursor_execute", self._note)
        return self

    def __exit__(self, *exc: Any) -> None:
        sa.event.remove(get_engine(), "before_cursor_execute", self._note)

    def _note(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.seen.append(statement)

    def reading(self, table: str) -> list[str]:
        return [s for s in self.seen if f"FROM {table}" in s or f"JOIN {table}" in s]


def _sid(headers: dict[str, str]) -> uuid.UUID:
    return uuid.UUID(security.decode_access_token(headers["Authorization"].removeprefix("Bearer "))["sid"])


def test_a_token_is_resolved_from_the_database_once(client: TestClient, harbor: Practice) -> None:
    headers = bearer(client, harbor.doctor_user.email)
    with _Statements() as first:
        assert client.get("/api/v1/clinics", headers=headers).status_code == 200
    with _Statements() as second:
        assert client.get("/api/v1/clinics", headers=headers).status_code == 200
    assert first.reading("memberships")
    assert second.reading("memberships") == [] and second.reading("user_sessions") == []


def test_a_role_changed_in_the_database_ends_the_cached_token(client: TestClient, harbor: Practice) -> None:
    headers = bearer(client, harbor.doctor_user.email)
    assert client.get("/api/v1/clinics", headers=headers).status_code == 200
    with UnitOfWork(harbor.system) as uow:  # through the ORM, as any service would
        membership = uow.session.exec(select(Membership).where(Membership.user_id == harbor.doctor_user.id)).one()
        membership.role, membership.provider_id = Role.ADMIN, None
        uow.commit()
    assert client.get("/api/v1/clinics", headers=headers).status_code == 401


def test_a_bulk_revocation_ends_the_cached_token(client: TestClient, harbor: Practice) -> None:
    headers = bearer(client, harbor.doctor_user.email)
    assert client.get("/api/v1/clinics", headers=headers).status_code == 200
    with UnitOfWork(harbor.system) as uow:
        uow.session.execute(update(UserSession).where(col(UserSession.id) == _sid(headers)).values(revoked_at=utcnow()))
        uow.commit()
    assert client.get("/api/v1/clinics", headers=headers).status_code == 401


def test_another_process_moving_the_generation_is_heard(client: TestClient, harbor: Practice) -> None:
    """A change committed by another process reaches this one through Redis: here the row changes behind the
    cache's back (as that process would) and only its generation move tells this process."""
    headers = bearer(client, harbor.doctor_user.email)
    assert client.get("/api/v1/clinics", headers=headers).status_code == 200
    with get_engine().begin() as conn:  # no ORM session: this process's hooks do not see it
        conn.execute(sa.text("SELECT set_config('app.tenant_id', :t, true)"), {"t": str(harbor.tenant.id)})
        conn.execute(sa.text("UPDATE user_sessions SET revoked_at = now() WHERE id = :s"), {"s": _sid(headers)})
    assert client.get("/api/v1/clinics", headers=headers).status_code == 200  # still cached: nobody said so
    prefix = get_settings().redis_key_prefix
    get_redis().incr(f"{prefix}:authgen:{harbor.tenant.id}")
    assert client.get("/api/v1/clinics", headers=headers).status_code == 401


def test_activity_bookkeeping_does_not_drop_the_cache(client: TestClient, harbor: Practice) -> None:
    """The idle clock's coarse copy (last_seen_at) is written now and then; it must not empty everyone's cache."""
    headers = bearer(client, harbor.doctor_user.email)
    assert client.get("/api/v1/clinics", headers=headers).status_code == 200
    before = actor_cache.generations(harbor.tenant.id)
    with UnitOfWork(harbor.system) as uow:
        touched = update(UserSession).where(col(UserSession.id) == _sid(headers)).values(last_seen_at=utcnow())
        uow.session.execute(touched)
        uow.commit()
    assert actor_cache.generations(harbor.tenant.id) == before
    with _Statements() as after:
        assert client.get("/api/v1/clinics", headers=headers).status_code == 200
    assert after.reading("memberships") == []


def test_another_practice_changing_its_users_keeps_this_cache(client: TestClient, harbor: Practice) -> None:
    summit = make_practice("Summit Counseling", "summit")
    headers = bearer(client, harbor.doctor_user.email)
    assert client.get("/api/v1/clinics", headers=headers).status_code == 200
    with UnitOfWork(summit.system) as uow:
        uow.session.execute(update(UserSession).values(revoked_at=utcnow()))
        uow.commit()
    with _Statements() as after:
        assert client.get("/api/v1/clinics", headers=headers).status_code == 200
    assert after.reading("memberships") == []


# -- edges found by review (each failed before its fix) ------------------------------------------------------


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
