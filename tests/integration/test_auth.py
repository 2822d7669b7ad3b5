"""The identity service: authenticate, tokens to actors, browser sessions (through the real database)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import select

from backend.audit.models import AuditEvent
from backend.db import UnitOfWork
from backend.errors import AuthenticationFailed, RateLimited
from backend.identity import security
from backend.identity.models import Membership, User, UserSession
from backend.identity.service import (
    BAD_LOGIN,
    actor_from_session,
    actor_from_token,
    end_session,
    issue_token,
    start_session,
)
from backend.identity.service import authenticate as _authenticate
from backend.settings import get_settings
from backend.tenancy.context import Actor, Role
from backend.types import utcnow
from tests.factories import PASSWORD_HASH, TEST_PASSWORD, Practice, add_user, make_practice, rows, second_factor


@pytest.fixture
def harbor(db: sa.Engine) -> Practice:
    return make_practice("Harbor Mental Health", "harbor")


@pytest.fixture
def summit(db: sa.Engine) -> Practice:
    return make_practice("Summit Counseling", "summit")


HOME_NETWORK = "198.51.100.7"


@pytest.fixture(autouse=True)
def throttle_keys(own_redis_keys: str) -> str:
    """This test's own login-throttle keys (see own_redis_keys)."""
    return own_redis_keys


def authenticate(*, client_address: str = HOME_NETWORK, **credentials: Any) -> Actor:
    # With the account's next MFA code (tests/factories.py: admins have MFA); it counts only after the password.
    if "totp" not in credentials:
        credentials["totp"] = second_factor(str(credentials.get("email", "")), credentials.get("practice"))
    return _authenticate(client_address=client_address, **credentials)


def _set_user(p: Practice, user_id: uuid.UUID, **values: object) -> None:
    with UnitOfWork(p.system) as uow:
        user = uow.session.get(User, user_id)
        assert user is not None
        for key, value in values.items():
            setattr(user, key, value)
        uow.session.add(user)
        uow.commit()


# -- authenticate --------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["admin", "doctor", "patient"])
def test_authenticate_returns_the_membership_actor(harbor: Practice, role: str) -> None:
    actor = authenticate(email=harbor.emails[role], password=TEST_PASSWORD)
    expected = {"admin": harbor.admin, "doctor": harbor.doctor, "patient": harbor.patient_actor}[role]
    assert actor == expected


def test_login_and_failed_login_are_audited_in_the_users_practice(harbor: Practice, summit: Practice) -> None:
    authenticate(email=harbor.admin_user.email, password=TEST_PASSWORD)
    with pytest.raises(AuthenticationFailed):
        authenticate(email=harbor.doctor_user.email, password="wrong")
    events = {(e.action, e.entity_id, e.actor_role) for e in rows(harbor, AuditEvent)}
    assert events == {
        ("user.login", harbor.admin_user.id, "admin"),
        ("user.login_failed", harbor.doctor_user.id, "system"),
    }
    assert rows(summit, AuditEvent) == []
    (admin,) = rows(harbor, User, id=harbor.admin_user.id)
    assert admin.last_login_at is not None


@pytest.mark.parametrize(("email", "password"), [("", TEST_PASSWORD), ("   ", TEST_PASSWORD), ("a@b.test", "")])
def test_blank_credentials_are_refused_before_any_lookup(harbor: Practice, email: str, password: str) -> None:
    with pytest.raises(AuthenticationFailed, match="Enter your email and password"):
        authenticate(email=email, password=password)
    assert rows(harbor, AuditEvent) == []


def test_inactive_user_cannot_log_in(harbor: Practice) -> None:
    _set_user(harbor, harbor.patient_user.id, is_active=False)
    with pytest.raises(AuthenticationFailed) as info:
        authenticate(email=harbor.patient_user.email, password=TEST_PASSWORD)
    assert info.value.message == BAD_LOGIN


def test_broadest_role_first_and_a_role_can_be_asked_for(harbor: Practice) -> None:
    user = add_user(harbor, "dual@harbor.test", Role.ADMIN, full_name="Dual Person")
    with UnitOfWork(harbor.system) as uow:
        uow.session.add(Membership(user_id=user.id, role=Role.PATIENT, patient_id=harbor.patient.id))
        uow.commit()
    assert authenticate(email="dual@harbor.test", password=TEST_PASSWORD).role == Role.ADMIN
    as_patient = authenticate(email="dual@harbor.test", password=TEST_PASSWORD, role=Role.PATIENT)
    assert (as_patient.role, as_patient.patient_id) == (Role.PATIENT, harbor.patient.id)
    with pytest.raises(AuthenticationFailed, match="no access"):
        authenticate(email="dual@harbor.test", password=TEST_PASSWORD, role=Role.DOCTOR)


def test_same_email_in_two_practices(harbor: Practice, summit: Practice) -> None:
    email = "shared@example.test"
    # Without MFA: which account the password picks is the point here, and a code would have to know it first.
    add_user(harbor, email, Role.ADMIN, with_mfa=False)
    theirs = add_user(summit, email, Role.ADMIN, with_mfa=False)
    # The practice slug decides.
    assert authenticate(email=email, password=TEST_PASSWORD, practice="harbor").tenant_id == harbor.tenant_id
    assert authenticate(email=email, password=TEST_PASSWORD, practice="summit").tenant_id == summit.tenant_id
    # With one password different, the password decides.
    _set_user(summit, theirs.id, password_hash=security.hash_password("summit only"))
    assert authenticate(email=email, password="summit only").tenant_id == summit.tenant_id
    assert authenticate(email=email, password=TEST_PASSWORD).tenant_id == harbor.tenant_id


def test_ambiguous_right_password_is_not_counted_as_a_failure(harbor: Practice, summit: Practice) -> None:
    email = "shared@example.test"
    add_user(harbor, email, Role.ADMIN)
    add_user(summit, email, Role.ADMIN)
    for _ in range(get_settings().login_free_failures + 2):
        with pytest.raises(AuthenticationFailed, match="choose your practice"):
            authenticate(email=email, password=TEST_PASSWORD)
    assert authenticate(email=email, password=TEST_PASSWORD, practice="summit").tenant_id == summit.tenant_id


def test_unknown_practice_slug_is_a_bad_login(harbor: Practice) -> None:
    with pytest.raises(AuthenticationFailed) as info:
        authenticate(email=harbor.admin_user.email, password=TEST_PASSWORD, practice="summit")
    assert info.value.message == BAD_LOGIN


def test_throttle_is_raised_with_retry_after_and_counts_nothing_in_the_database(
    harbor: Practice, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_settings(), "login_backoff_base_seconds", 60.0)
    for _ in range(get_settings().login_free_failures):
        with pytest.raises(AuthenticationFailed):
            authenticate(email=harbor.doctor_user.email, password="wrong")
    failed = len(rows(harbor, AuditEvent))
    with pytest.raises(RateLimited) as info:
        authenticate(email=harbor.doctor_user.email, password=TEST_PASSWORD)
    assert 0 < info.value.retry_after <= 60
    assert f"{info.value.retry_after} seconds" in info.value.message
    assert len(rows(harbor, AuditEvent)) == failed  # a throttled attempt is not checked, so not audited
    # The owner's own network goes on.
    assert authenticate(email=harbor.doctor_user.email, password=TEST_PASSWORD, client_address="203.0.113.9")


def test_failed_login_audit_names_the_user_but_not_the_email(harbor: Practice) -> None:
    with pytest.raises(AuthenticationFailed):
        authenticate(email=harbor.admin_user.email, password="wrong")
    (event,) = rows(harbor, AuditEvent, action="user.login_failed")
    assert event.entity_id == harbor.admin_user.id
    assert harbor.admin_user.email not in str(event.data)


# -- tokens --------------------------------------------------------------------------------------------


def test_token_round_trip_to_the_same_actor(harbor: Practice) -> None:
    for actor in (harbor.admin, harbor.doctor, harbor.patient_actor):
        token, _ = issue_token(actor)
        assert actor_from_token(token) == actor


def test_no_token_for_the_system_or_for_nobody(harbor: Practice) -> None:
    with pytest.raises(AuthenticationFailed):
        issue_token(harbor.system)
    with pytest.raises(AuthenticationFailed):
        issue_token(Actor(tenant_id=harbor.tenant_id, role=Role.ADMIN))


def test_removed_membership_invalidates_the_token(harbor: Practice) -> None:
    token, _ = issue_token(harbor.doctor)
    with UnitOfWork(harbor.system) as uow:
        membership = uow.session.get(Membership, harbor.doctor_membership.id)
        uow.session.delete(membership)
        uow.commit()
    with pytest.raises(AuthenticationFailed, match="invalid or expired token"):
        actor_from_token(token)


def test_token_with_an_unknown_role_is_refused(harbor: Practice) -> None:
    real, _ = issue_token(harbor.admin)
    sid = uuid.UUID(security.decode_access_token(real)["sid"])
    token, _ = security.issue_access_token(
        user_id=harbor.admin_user.id, tenant_id=harbor.tenant_id, role="owner", session_id=sid
    )
    with pytest.raises(AuthenticationFailed):
        actor_from_token(token)


# -- browser sessions ----------------------------------------------------------------------------------


def _session_row(p: Practice, token: str) -> UserSession:
    (row,) = rows(p, UserSession, token_hash=security.hash_session_token(token))
    return row


def test_session_round_trip_stores_only_a_hash(harbor: Practice) -> None:
    token, max_age = start_session(harbor.patient_actor)
    assert max_age == get_settings().session_hours * 3600
    assert actor_from_session(token) == harbor.patient_actor
    row = _session_row(harbor, token)
    assert row.token_hash != token and row.user_id == harbor.patient_user.id
    assert timedelta(0) < row.expires_at - utcnow() <= timedelta(seconds=max_age)


def test_expired_session_returns_none(harbor: Practice) -> None:
    token, _ = start_session(harbor.admin)
    with UnitOfWork(harbor.system) as uow:
        row = uow.session.exec(
            select(UserSession).where(UserSession.token_hash == security.hash_session_token(token))
        ).one()
        row.expires_at = utcnow() - timedelta(seconds=1)
        uow.session.add(row)
        uow.commit()
    assert actor_from_session(token) is None


def test_ended_session_returns_none(harbor: Practice) -> None:
    token, _ = start_session(harbor.doctor)
    other, _ = start_session(harbor.doctor)
    end_session(token)
    assert actor_from_session(token) is None
    assert actor_from_session(other) == harbor.doctor  # only the one session is revoked
    revoked_at = _session_row(harbor, token).revoked_at
    end_session(token)  # a second logout changes nothing
    assert _session_row(harbor, token).revoked_at == revoked_at


def test_session_of_a_deactivated_user_returns_none(harbor: Practice) -> None:
    token, _ = start_session(harbor.patient_actor)
    _set_user(harbor, harbor.patient_user.id, is_active=False)
    assert actor_from_session(token) is None


@pytest.mark.parametrize("token", [None, "", "made-up-token"])
def test_unknown_session_tokens(harbor: Practice, token: str | None) -> None:
    assert actor_from_session(token) is None
    end_session(token)  # ignored
    assert rows(harbor, UserSession) == []


def test_password_hash_is_reused_by_the_factories() -> None:
    # The fixtures hash once; the hash must still verify (and not verify another password).
    assert security.verify_password(PASSWORD_HASH, TEST_PASSWORD)
    assert not security.verify_password(PASSWORD_HASH, TEST_PASSWORD + "!")
