"""POST /api/v1/auth/token, bearer authentication, login throttling, and the browser cookie routes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from http.cookies import SimpleCookie

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from backend.api.app import api
from backend.db import UnitOfWork
from backend.identity import security
from backend.identity.models import User, UserSession
from backend.identity.service import BAD_LOGIN, actor_from_session
from backend.settings import get_settings
from backend.tenancy.context import Role
from tests.factories import TEST_PASSWORD, Practice, bearer, make_practice, rows, token_request


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(api, follow_redirects=False) as c:
        yield c


@pytest.fixture
def harbor(db: sa.Engine) -> Practice:
    return make_practice("Harbor Mental Health", "harbor")


@pytest.fixture
def summit(db: sa.Engine) -> Practice:
    return make_practice("Summit Counseling", "summit", zones=("America/Denver", "Asia/Tokyo"))


@pytest.fixture(autouse=True)
def throttle_keys(own_redis_keys: str) -> str:
    """This test's own login-throttle keys (see own_redis_keys)."""
    return own_redis_keys


@pytest.fixture
def slow_backoff(monkeypatch: pytest.MonkeyPatch) -> float:
    """Make the first throttled wait a minute, so the test never races the clock."""
    monkeypatch.setattr(get_settings(), "login_backoff_base_seconds", 60.0)
    return 60.0


def _token(client: TestClient, email: str, password: str) -> tuple[int, dict[str, object], dict[str, str]]:
    # With the account's next MFA code (tests/factories.py: admins have MFA); it counts only after the password.
    response = client.post("/api/v1/auth/token", json=token_request(email, password))
    return response.status_code, response.json(), dict(response.headers)


# -- tokens --------------------------------------------------------------------------------------------


def test_token_for_good_credentials(client: TestClient, harbor: Practice) -> None:
    status, body, _ = _token(client, harbor.admin_user.email, TEST_PASSWORD)
    assert status == 200
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == get_settings().access_token_minutes * 60
    assert body["refresh_token"]
    claims = security.decode_access_token(str(body["access_token"]))
    assert claims["sub"] == str(harbor.admin_user.id)
    assert claims["tenant"] == str(harbor.tenant_id)
    assert claims["role"] == "admin"
    # Bound to an API session of its own, which keeps only the refresh token's hash.
    (session,) = rows(harbor, UserSession, id=uuid.UUID(claims["sid"]))
    assert (session.kind, session.user_id, session.revoked_at) == ("api", harbor.admin_user.id, None)
    assert session.refresh_hash == security.hash_session_token(str(body["refresh_token"]))


def test_token_works_on_a_protected_route(client: TestClient, harbor: Practice) -> None:
    me = client.get("/api/v1/me", headers=bearer(client, harbor.doctor_user.email))
    assert me.status_code == 200
    assert me.json()["role"] == "doctor"
    assert me.json()["provider_id"] == str(harbor.provider.id)
    assert me.json()["practice"] == harbor.tenant.name


def test_email_is_case_and_blank_insensitive(client: TestClient, harbor: Practice) -> None:
    status, _, _ = _token(client, f"  {harbor.patient_user.email.upper()} ", TEST_PASSWORD)
    assert status == 200


def test_wrong_password_and_unknown_email_get_the_same_401(client: TestClient, harbor: Practice) -> None:
    wrong_status, wrong, wrong_headers = _token(client, harbor.admin_user.email, "not the password")
    unknown_status, unknown, _ = _token(client, "nobody@harbor.test", "not the password")
    assert wrong_status == unknown_status == 401
    assert wrong == unknown == {"detail": BAD_LOGIN, "code": "authentication_failed"}
    assert wrong_headers["www-authenticate"] == "Bearer"


def test_empty_password_is_a_422(client: TestClient, harbor: Practice) -> None:
    response = client.post("/api/v1/auth/token", json={"email": harbor.admin_user.email, "password": ""})
    assert response.status_code == 422


def test_system_role_is_never_issued(client: TestClient, harbor: Practice) -> None:
    response = client.post(
        "/api/v1/auth/token", json={"email": harbor.admin_user.email, "password": TEST_PASSWORD, "role": "system"}
    )
    assert response.status_code == 401


def test_throttled_after_five_failures_from_the_same_network(
    client: TestClient, harbor: Practice, slow_backoff: float
) -> None:
    email = harbor.admin_user.email
    for attempt in range(1, 6):
        status, body, _ = _token(client, email, f"wrong-{attempt}")
        assert (status, body) == (401, {"detail": BAD_LOGIN, "code": "authentication_failed"}), attempt

    # From the network that failed, even the right password waits (it is not checked, so not counted).
    status, body, headers = _token(client, email, TEST_PASSWORD)
    assert status == 429
    retry_after = int(headers["retry-after"])
    assert 0 < retry_after <= slow_backoff
    assert "Too many failed attempts" in str(body["detail"])
    assert body["code"] == "rate_limited"

    # The other accounts of the practice are not affected.
    assert _token(client, harbor.doctor_user.email, TEST_PASSWORD)[0] == 200


def test_success_resets_the_backoff(client: TestClient, harbor: Practice, slow_backoff: float) -> None:
    email = harbor.patient_user.email
    for _ in range(4):
        assert _token(client, email, "wrong")[0] == 401
    assert _token(client, email, TEST_PASSWORD)[0] == 200
    # Five fresh failures are free again; only the sixth attempt waits.
    for _ in range(5):
        assert _token(client, email, "wrong")[0] == 401
    assert _token(client, email, TEST_PASSWORD)[0] == 429


def test_no_failure_counter_is_kept_on_the_user_row(client: TestClient, harbor: Practice) -> None:
    # The old per-user counter let anyone lock the account for everyone; throttling lives in Redis now.
    assert _token(client, harbor.admin_user.email, "wrong")[0] == 401
    (user,) = rows(harbor, User, id=harbor.admin_user.id)
    assert not hasattr(user, "failed_login_count")


# -- bearer authentication -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Basic YWRtaW46YWRtaW4="},
        {"Authorization": "Token abc"},
    ],
    ids=["none", "empty", "garbage", "basic", "other-scheme"],
)
def test_protected_routes_need_a_valid_bearer_token(client: TestClient, harbor: Practice, headers: dict) -> None:
    for path in ("/api/v1/clinics", "/api/v1/appointments", "/api/v1/waitlists", "/api/v1/audit-events"):
        response = client.get(path, headers=headers)
        assert response.status_code == 401, path
        assert response.json()["detail"]


def test_token_of_a_deactivated_user_stops_working(client: TestClient, harbor: Practice) -> None:
    headers = bearer(client, harbor.doctor_user.email)
    assert client.get("/api/v1/clinics", headers=headers).status_code == 200
    with UnitOfWork(harbor.system) as uow:
        user = uow.session.get(User, harbor.doctor_user.id)
        assert user is not None
        user.is_active = False
        uow.session.add(user)
        uow.commit()
    assert client.get("/api/v1/clinics", headers=headers).status_code == 401


def _sid(client: TestClient, email: str) -> uuid.UUID:
    """The session id of a real token of `email` (a forged token needs a live session to name)."""
    token = bearer(client, email)["Authorization"].removeprefix("Bearer ")
    return uuid.UUID(security.decode_access_token(token)["sid"])


def test_token_naming_another_tenant_is_refused(client: TestClient, harbor: Practice, summit: Practice) -> None:
    # A validly signed token whose tenant and user do not belong together resolves to nobody.
    sid = _sid(client, summit.admin_user.email)
    token, _ = security.issue_access_token(
        user_id=summit.admin_user.id, tenant_id=harbor.tenant_id, role="admin", session_id=sid
    )
    response = client.get("/api/v1/clinics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


def test_token_for_a_role_the_user_does_not_hold_is_refused(client: TestClient, harbor: Practice) -> None:
    sid = _sid(client, harbor.patient_user.email)
    token, _ = security.issue_access_token(
        user_id=harbor.patient_user.id, tenant_id=harbor.tenant_id, role="admin", session_id=sid
    )
    response = client.get("/api/v1/audit-events", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


def test_token_for_an_unknown_user_is_refused(client: TestClient, harbor: Practice) -> None:
    sid = _sid(client, harbor.admin_user.email)
    token, _ = security.issue_access_token(
        user_id=uuid.uuid4(), tenant_id=harbor.tenant_id, role="admin", session_id=sid
    )
    assert client.get("/api/v1/clinics", headers={"Authorization": f"Bearer {token}"}).status_code == 401


# -- browser cookie login ------------------------------------------------------------------------------


def _same_origin(client: TestClient) -> dict[str, str]:
    # The form posts from the app's own page: cross-site posts to /auth/* are refused at the edge.
    return {"Origin": str(client.base_url).rstrip("/")}


def _login(client: TestClient, email: str, password: str = TEST_PASSWORD, **form: str) -> httpx.Response:
    return client.post("/auth/login", data={"email": email, "password": password, **form}, headers=_same_origin(client))


def _logout(client: TestClient) -> httpx.Response:
    return client.post("/auth/logout", headers=_same_origin(client))


def _cookie(response: httpx.Response) -> SimpleCookie:
    jar: SimpleCookie = SimpleCookie()
    for header in response.headers.get_list("set-cookie"):
        jar.load(header)
    return jar


# An admin signs in with MFA first (tests/integration/test_mfa.py).
@pytest.mark.parametrize(("role", "home"), [("patient", "/patient"), ("doctor", "/doctor")])
def test_browser_login_sets_a_session_cookie_and_goes_home(
    client: TestClient, harbor: Practice, role: str, home: str
) -> None:
    response = _login(client, harbor.emails[role])
    assert response.status_code == 303
    assert response.headers["location"] == home
    name = get_settings().session_cookie
    assert name == "clinic_session"  # the suite's PUBLIC_URL is plain http: no Secure, so no __Host- prefix
    morsel = _cookie(response)[name]
    assert morsel.value
    assert morsel["httponly"] is True
    assert not morsel["secure"]
    assert morsel["samesite"].lower() == "lax"
    assert morsel["path"] == "/"
    assert int(morsel["max-age"]) == get_settings().session_hours * 3600
    actor = actor_from_session(morsel.value)
    assert actor is not None
    assert actor.tenant_id == harbor.tenant_id and actor.role == Role(role)


def test_browser_login_with_a_bad_password_sets_no_cookie(client: TestClient, harbor: Practice) -> None:
    response = _login(client, harbor.admin_user.email, "wrong")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?error=invalid"
    assert "set-cookie" not in response.headers
    assert rows(harbor, UserSession) == []


def test_browser_login_when_throttled(client: TestClient, harbor: Practice, slow_backoff: float) -> None:
    for _ in range(5):
        _login(client, harbor.admin_user.email, "wrong")
    response = _login(client, harbor.admin_user.email)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?error=throttled&retry=")
    assert "set-cookie" not in response.headers


def test_browser_login_honours_a_same_site_next(client: TestClient, harbor: Practice) -> None:
    response = _login(client, harbor.doctor_user.email, next="/doctor/schedule")
    assert response.headers["location"] == "/doctor/schedule"


@pytest.mark.parametrize("target", ["//evil.example", "https://evil.example/x", "/\\evil.example", "evil"])
def test_browser_login_ignores_a_next_to_another_site(client: TestClient, harbor: Practice, target: str) -> None:
    response = _login(client, harbor.doctor_user.email, next=target)
    assert response.status_code == 303
    assert response.headers["location"] == "/doctor"


def test_logout_revokes_the_session_and_clears_the_cookie(client: TestClient, harbor: Practice) -> None:
    name = get_settings().session_cookie
    token = _cookie(_login(client, harbor.patient_user.email))[name].value
    assert actor_from_session(token) is not None
    assert client.cookies.get(name) == token  # the browser keeps it and sends it back on logout

    response = _logout(client)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")
    cleared = _cookie(response)[name]
    assert cleared.value == ""
    assert int(cleared["max-age"]) == 0
    # The browser is told to drop the tab's storage too (the Reflex client token lives in sessionStorage).
    assert response.headers["clear-site-data"] == '"cache", "storage"'
    assert actor_from_session(token) is None
    (session,) = rows(harbor, UserSession)
    assert session.revoked_at is not None


def test_logout_without_a_cookie_is_harmless(client: TestClient, harbor: Practice) -> None:
    response = _logout(client)
    assert response.status_code == 303


def test_browser_login_asks_for_the_practice_when_the_email_is_in_two(
    client: TestClient, harbor: Practice, summit: Practice
) -> None:
    from tests.factories import add_user

    add_user(harbor, "shared@example.test", Role.DOCTOR, provider_id=harbor.provider.id)
    add_user(summit, "shared@example.test", Role.DOCTOR, provider_id=summit.provider.id)
    asked = _login(client, "shared@example.test")
    assert asked.status_code == 303
    assert asked.headers["location"] == "/login?error=practice"
    assert "set-cookie" not in asked.headers
    chosen = _login(client, "shared@example.test", practice="summit")
    assert chosen.headers["location"] == "/doctor"
    actor = actor_from_session(_cookie(chosen)[get_settings().session_cookie].value)
    assert actor is not None and actor.tenant_id == summit.tenant_id


# -- cookies over HTTPS --------------------------------------------------------------------------------


@pytest.fixture
def https_client(monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setattr(get_settings(), "public_url", "https://clinic.example")
    monkeypatch.setattr(get_settings(), "cookie_secure", None)
    with TestClient(api, base_url="https://testserver", follow_redirects=False) as c:
        yield c


def test_https_session_cookie_is_secure_and_host_prefixed(https_client: TestClient, harbor: Practice) -> None:
    response = _login(https_client, harbor.patient_user.email)
    assert response.headers["location"] == "/patient"
    (header,) = response.headers.get_list("set-cookie")
    assert header.startswith("__Host-clinic_session=")
    morsel = _cookie(response)["__Host-clinic_session"]
    assert morsel["secure"] is True and morsel["httponly"] is True
    assert morsel["samesite"].lower() == "lax"
    assert morsel["path"] == "/" and not morsel["domain"]
    token = morsel.value
    assert actor_from_session(token) is not None

    # Sign-out reads the prefixed name, revokes that session, and clears it with the same attributes.
    response = _logout(https_client)
    (cleared,) = response.headers.get_list("set-cookie")
    assert cleared.startswith('__Host-clinic_session=""') or cleared.startswith("__Host-clinic_session=;")
    assert "secure" in cleared.lower() and "path=/" in cleared.lower()
    assert actor_from_session(token) is None


def test_explicit_cookie_secure_false_overrides_https(
    https_client: TestClient, harbor: Practice, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_settings(), "cookie_secure", False)
    response = _login(https_client, harbor.patient_user.email)
    morsel = _cookie(response)["clinic_session"]
    assert morsel.value and not morsel["secure"]


def test_portal_reads_the_effective_cookie_name(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from portal.state.session import session_token

    def state(cookie: str) -> object:
        return SimpleNamespace(router=SimpleNamespace(headers=SimpleNamespace(cookie=cookie)))

    monkeypatch.setattr(get_settings(), "public_url", "https://clinic.example")
    monkeypatch.setattr(get_settings(), "cookie_secure", None)
    assert session_token(state("__Host-clinic_session=abc; clinic_session=stale")) == "abc"  # type: ignore[arg-type]
    monkeypatch.setattr(get_settings(), "public_url", "http://127.0.0.1:3000")
    assert session_token(state("__Host-clinic_session=abc; clinic_session=plain")) == "plain"  # type: ignore[arg-type]
