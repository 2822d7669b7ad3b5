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
from backend.identity.models import Membership, UserSession
from backend.redis_client import get_redis
from backend.settings import get_settings
from backend.tenancy.context import Role
from backend.types import utcnow
from tests.factories import Practice, bearer, make_practice


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
