"""Bearer tokens end with their session: sign-out, refresh-token reuse, a password change, a disabled user."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from backend.api.app import api
from backend.audit.models import AuditEvent
from backend.identity import security
from backend.identity.models import User, UserSession
from backend.identity.service import actor_from_session, start_session
from backend.settings import get_settings
from tests.factories import TEST_PASSWORD, Practice, make_practice, rows, token_request

NEW_PASSWORD = "a much longer passphrase"


@pytest.fixture(autouse=True)
def throttle_keys(own_redis_keys: str) -> str:
    """This test's own login-throttle keys (see own_redis_keys)."""
    return own_redis_keys


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(api, follow_redirects=False) as c:
        yield c


@pytest.fixture
def harbor(db: sa.Engine) -> Practice:
    return make_practice("Harbor Mental Health", "harbor")


@pytest.fixture
def summit(db: sa.Engine) -> Practice:
    return make_practice("Summit Counseling", "summit")


def _login(client: TestClient, email: str, password: str = TEST_PASSWORD) -> dict[str, Any]:
    # With the account's next MFA code (tests/factories.py: admins have MFA).
    response = client.post("/api/v1/auth/token", json=token_request(email, password))
    assert response.status_code == 200, response.text
    return dict(response.json())


def _auth(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def _me(client: TestClient, tokens: dict[str, Any]) -> int:
    return client.get("/api/v1/me", headers=_auth(tokens)).status_code


def _refresh(client: TestClient, refresh_token: str) -> Any:
    return client.post("/api/v1/auth/refresh", json={"refresh_token": refresh_token})


def test_access_tokens_are_short_lived(client: TestClient, harbor: Practice) -> None:
    tokens = _login(client, harbor.admin_user.email)
    assert tokens["expires_in"] == 15 * 60 == get_settings().access_token_minutes * 60
    claims = security.decode_access_token(tokens["access_token"])
    assert claims["exp"] - claims["iat"] == 15 * 60


def test_bearer_logout_ends_the_token_at_once(client: TestClient, harbor: Practice) -> None:
    tokens = _login(client, harbor.doctor_user.email)
    other = _login(client, harbor.doctor_user.email)  # another device of the same person
    assert _me(client, tokens) == 200
    assert client.post("/api/v1/auth/logout", headers=_auth(tokens)).status_code == 204
    assert _me(client, tokens) == 401
    assert _refresh(client, tokens["refresh_token"]).status_code == 401
    assert _me(client, other) == 200  # only that session ended
    assert client.post("/api/v1/auth/logout", headers=_auth(tokens)).status_code == 401


def test_logout_needs_a_token(client: TestClient, harbor: Practice) -> None:
    assert client.post("/api/v1/auth/logout").status_code == 401


def test_refresh_rotates_and_the_old_access_token_keeps_its_session(client: TestClient, harbor: Practice) -> None:
    first = _login(client, harbor.patient_user.email)
    response = _refresh(client, first["refresh_token"])
    assert response.status_code == 200, response.text
    second = response.json()
    assert second["token_type"] == "bearer" and second["expires_in"] == get_settings().access_token_minutes * 60
    assert second["refresh_token"] != first["refresh_token"]
    assert _me(client, second) == 200
    claims = security.decode_access_token(second["access_token"])
    assert claims["sid"] == security.decode_access_token(first["access_token"])["sid"]
    assert claims["role"] == "patient" and claims["sub"] == str(harbor.patient_user.id)
    # Only the hash of the current refresh token is stored.
    (session,) = rows(harbor, UserSession, id=uuid.UUID(claims["sid"]))
    assert session.refresh_hash == security.hash_session_token(second["refresh_token"])
    assert second["refresh_token"] not in str(session.model_dump())


def test_reused_refresh_token_revokes_the_whole_session(client: TestClient, harbor: Practice) -> None:
    first = _login(client, harbor.patient_user.email)
    second = _refresh(client, first["refresh_token"]).json()
    # Someone replays the rotated token (a copy was stolen): both copies die, and the event is audited.
    replay = _refresh(client, first["refresh_token"])
    assert replay.status_code == 401
    assert _me(client, second) == 401
    assert _refresh(client, second["refresh_token"]).status_code == 401
    (event,) = rows(harbor, AuditEvent, action="user.refresh_token_reused")
    assert event.entity_id == harbor.patient_user.id


@pytest.mark.parametrize("garbage", ["", "x", "a.b.c", f"{uuid.uuid4().hex}.0.secret", "\x00" * 10])
def test_unknown_refresh_tokens_are_refused(client: TestClient, harbor: Practice, garbage: str) -> None:
    response = _refresh(client, garbage)
    assert response.status_code in {401, 422}
    assert response.status_code != 500


def test_a_wrong_secret_for_the_current_generation_is_refused_without_ending_the_session(
    client: TestClient, harbor: Practice
) -> None:
    tokens = _login(client, harbor.admin_user.email)
    sid, generation = security.parse_refresh_token(tokens["refresh_token"]) or (None, None)
    assert sid is not None and generation == 0
    forged, _ = security.new_refresh_token(sid, 0)
    assert _refresh(client, forged).status_code == 401
    assert _me(client, tokens) == 200
    assert _refresh(client, tokens["refresh_token"]).status_code == 200


def test_password_change_ends_every_session(client: TestClient, harbor: Practice) -> None:
    email = harbor.patient_user.email
    tokens, other = _login(client, email), _login(client, email)
    cookie, _ = start_session(harbor.patient_actor)
    response = client.post(
        "/api/v1/me/password",
        headers=_auth(tokens),
        json={"current_password": TEST_PASSWORD, "new_password": NEW_PASSWORD},
    )
    assert response.status_code == 204, response.text
    assert _me(client, tokens) == 401 and _me(client, other) == 401
    assert _refresh(client, other["refresh_token"]).status_code == 401
    assert actor_from_session(cookie) is None
    assert client.post("/api/v1/auth/token", json={"email": email, "password": TEST_PASSWORD}).status_code == 401
    assert _me(client, _login(client, email, NEW_PASSWORD)) == 200
    (event,) = rows(harbor, AuditEvent, action="user.password_changed")
    assert event.entity_id == harbor.patient_user.id
    assert event.data == {"sessions_ended": 3}
    assert NEW_PASSWORD not in str(event.data)


@pytest.mark.parametrize(
    ("current", "new", "field"),
    [
        ("wrong password", NEW_PASSWORD, "current_password"),
        (TEST_PASSWORD, "short", "new_password"),
        (TEST_PASSWORD, " " * 12, "new_password"),
        (TEST_PASSWORD, TEST_PASSWORD, "new_password"),
        (TEST_PASSWORD, "PATIENT@HARBOR.TEST", "new_password"),
    ],
    ids=["wrong-current", "too-short", "blank", "unchanged", "the-email"],
)
def test_password_change_refusals_change_nothing(
    client: TestClient, harbor: Practice, current: str, new: str, field: str
) -> None:
    email = harbor.patient_user.email
    tokens = _login(client, email)
    (before,) = rows(harbor, User, id=harbor.patient_user.id)
    response = client.post(
        "/api/v1/me/password", headers=_auth(tokens), json={"current_password": current, "new_password": new}
    )
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    (after,) = rows(harbor, User, id=harbor.patient_user.id)
    assert after.password_hash == before.password_hash
    assert _me(client, tokens) == 200
    assert rows(harbor, AuditEvent, action="user.password_changed") == []


def test_password_change_needs_a_token(client: TestClient, harbor: Practice) -> None:
    body = {"current_password": TEST_PASSWORD, "new_password": NEW_PASSWORD}
    assert client.post("/api/v1/me/password", json=body).status_code == 401


def test_admin_disables_a_user_and_every_session_of_theirs_ends(client: TestClient, harbor: Practice) -> None:
    admin = _login(client, harbor.admin_user.email)
    doctor = _login(client, harbor.doctor_user.email)
    cookie, _ = start_session(harbor.doctor)
    response = client.post(f"/api/v1/users/{harbor.doctor_user.id}/disable", headers=_auth(admin))
    assert response.status_code == 200, response.text
    assert response.json() == {"id": str(harbor.doctor_user.id), "is_active": False}
    assert _me(client, doctor) == 401
    assert _refresh(client, doctor["refresh_token"]).status_code == 401
    assert actor_from_session(cookie) is None
    login = client.post("/api/v1/auth/token", json={"email": harbor.doctor_user.email, "password": TEST_PASSWORD})
    assert login.status_code == 401
    (event,) = rows(harbor, AuditEvent, action="user.disabled")
    assert (event.entity_id, event.actor_user_id, event.data) == (
        harbor.doctor_user.id,
        harbor.admin_user.id,
        {"sessions_ended": 2},
    )
    assert _me(client, admin) == 200


def test_disable_refusals(client: TestClient, harbor: Practice, summit: Practice) -> None:
    admin = _login(client, harbor.admin_user.email)
    # Another practice's user answers exactly like a missing one, and stays active.
    foreign = client.post(f"/api/v1/users/{summit.admin_user.id}/disable", headers=_auth(admin))
    missing = client.post(f"/api/v1/users/{uuid.uuid4()}/disable", headers=_auth(admin))
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == missing.json()
    (theirs,) = rows(summit, User, id=summit.admin_user.id)
    assert theirs.is_active
    # Only admins, and not themselves.
    doctor = _login(client, harbor.doctor_user.email)
    assert client.post(f"/api/v1/users/{harbor.patient_user.id}/disable", headers=_auth(doctor)).status_code == 403
    assert client.post(f"/api/v1/users/{harbor.admin_user.id}/disable", headers=_auth(admin)).status_code == 422
    assert all(u.is_active for u in rows(harbor, User))
    assert client.post(f"/api/v1/users/{harbor.patient_user.id}/disable").status_code == 401


def test_a_token_without_a_session_claim_is_refused(client: TestClient, harbor: Practice) -> None:
    # Tokens signed before sessions were bound (no `sid`) must not outlive this release.
    from joserfc import jwt
    from joserfc.jwk import OctKey

    claims = security.decode_access_token(_login(client, harbor.admin_user.email)["access_token"])
    del claims["sid"]
    key = OctKey.import_key(get_settings().secret_key)
    token = jwt.encode({"alg": "HS256", "typ": "JWT"}, claims, key, algorithms=["HS256"])
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_an_expired_session_ends_its_tokens(client: TestClient, harbor: Practice) -> None:
    from backend.db import UnitOfWork
    from backend.types import utcnow

    tokens = _login(client, harbor.admin_user.email)
    sid = uuid.UUID(security.decode_access_token(tokens["access_token"])["sid"])
    with UnitOfWork(harbor.system) as uow:
        session = uow.session.get(UserSession, sid)
        assert session is not None
        session.expires_at = utcnow()
        uow.commit()
    assert _me(client, tokens) == 401
    assert _refresh(client, tokens["refresh_token"]).status_code == 401
