"""MFA on the real database: POST /auth/token with codes, replay, recovery codes, throttling, the browser's two
steps, the enrolment-only session, the admin's reset (audited, never across practices), and the practice policy."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from http.cookies import SimpleCookie

import httpx
import pyotp
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from backend.api.app import api
from backend.audit.models import AuditEvent
from backend.db import UnitOfWork
from backend.identity import mfa
from backend.identity.models import MfaRecoveryCode, User, UserSession
from backend.identity.service import actor_from_session
from backend.settings import get_settings
from backend.tenancy.context import Actor, Role
from backend.tenancy.models import Clinic
from tests.factories import TEST_PASSWORD, Practice, bearer, make_practice, remove_mfa, rows


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(api, follow_redirects=False) as c:
        yield c


@pytest.fixture
def harbor(db: sa.Engine) -> Practice:
    """Harbor, whose admin has not set up MFA (the factories enrol every admin): the tests here set it up."""
    practice = make_practice("Harbor Mental Health", "harbor")
    remove_mfa(practice, practice.admin_user)
    return practice


@pytest.fixture
def summit(db: sa.Engine) -> Practice:
    return make_practice("Summit Counseling", "summit", zones=("America/Denver", "Asia/Tokyo"))


@pytest.fixture(autouse=True)
def throttle_keys(own_redis_keys: str) -> str:
    return own_redis_keys


class Enrolled:
    def __init__(self, secret: str, codes: list[str], step: int) -> None:
        self.secret = secret
        self.recovery_codes = codes
        self.confirmed_step = step

    def code(self, step: int) -> str:
        return str(pyotp.TOTP(self.secret).at(step * mfa.STEP_SECONDS))


def _steady() -> int:
    """The current step, with at least 4 seconds of it left (so a test's codes stay inside the window)."""
    while mfa.STEP_SECONDS - time.time() % mfa.STEP_SECONDS < 4:
        time.sleep(0.5)
    return mfa.current_step()


def enrol(actor: Actor) -> Enrolled:
    """Set up MFA through the service, confirming with the previous step's code (so this step and the next are
    still free for the test)."""
    step = _steady()
    with UnitOfWork(actor) as uow:
        secret = mfa.begin_enrolment(actor, uow).secret
        uow.commit()
    with UnitOfWork(actor) as uow:
        codes = mfa.confirm_enrolment(actor, uow, code=str(pyotp.TOTP(secret).at((step - 1) * 30)))
        uow.commit()
    return Enrolled(secret, codes, step - 1)


def _token(client: TestClient, email: str, totp: str | None = None, password: str = TEST_PASSWORD) -> httpx.Response:
    body: dict[str, str] = {"email": email, "password": password}
    if totp is not None:
        body["totp"] = totp
    return client.post("/api/v1/auth/token", json=body)


def _origin(client: TestClient) -> dict[str, str]:
    return {"Origin": str(client.base_url).rstrip("/")}


def _cookies(response: httpx.Response) -> SimpleCookie:
    jar: SimpleCookie = SimpleCookie()
    for header in response.headers.get_list("set-cookie"):
        jar.load(header)
    return jar


def _actions(p: Practice, action: str) -> list[AuditEvent]:
    return rows(p, AuditEvent, action=action)


# -- POST /api/v1/auth/token ---------------------------------------------------------------------------------------


def test_an_account_with_mfa_needs_a_code(client: TestClient, harbor: Practice) -> None:
    enrolled = enrol(harbor.admin)
    missing = _token(client, harbor.admin_user.email)
    assert missing.status_code == 401
    assert missing.json()["code"] == "mfa_required"
    assert "access_token" not in missing.json()

    step = mfa.current_step()
    wrong = f"{(int(enrolled.code(step)) + 500_000) % 1_000_000:06d}"
    refused = _token(client, harbor.admin_user.email, wrong)
    assert (refused.status_code, refused.json()["code"]) == (401, "mfa_invalid")

    ok = _token(client, harbor.admin_user.email, enrolled.code(step))
    assert ok.status_code == 200, ok.text
    assert ok.json()["access_token"]
    (login,) = [e for e in _actions(harbor, "user.login") if e.entity_id == harbor.admin_user.id]
    assert login.data["mfa"] == "totp"
    assert len(_actions(harbor, "user.mfa_failed")) == 1


def test_a_wrong_password_with_a_right_code_is_still_a_wrong_password(client: TestClient, harbor: Practice) -> None:
    enrolled = enrol(harbor.admin)
    response = _token(client, harbor.admin_user.email, enrolled.code(mfa.current_step()), password="wrong password")
    assert (response.status_code, response.json()["code"]) == (401, "authentication_failed")
    # The code was not spent: the password was checked first.
    assert _token(client, harbor.admin_user.email, enrolled.code(mfa.current_step())).status_code == 200


def test_a_used_code_is_refused(client: TestClient, harbor: Practice) -> None:
    enrolled = enrol(harbor.admin)
    step = mfa.current_step()
    assert _token(client, harbor.admin_user.email, enrolled.code(step)).status_code == 200
    replay = _token(client, harbor.admin_user.email, enrolled.code(step))
    assert (replay.status_code, replay.json()["code"]) == (401, "mfa_invalid")
    # So is the code that confirmed the enrolment, and any earlier one.
    old = _token(client, harbor.admin_user.email, enrolled.code(enrolled.confirmed_step))
    assert old.json()["code"] == "mfa_invalid"
    # The next step's code is still good (valid_window=1).
    assert _token(client, harbor.admin_user.email, enrolled.code(step + 1)).status_code == 200
    (user,) = rows(harbor, User, id=harbor.admin_user.id)
    assert user.mfa_last_step == step + 1


def test_a_recovery_code_works_once(client: TestClient, harbor: Practice) -> None:
    enrolled = enrol(harbor.admin)
    code = enrolled.recovery_codes[3]
    first = _token(client, harbor.admin_user.email, code.upper())
    assert first.status_code == 200, first.text
    again = _token(client, harbor.admin_user.email, code)
    assert (again.status_code, again.json()["code"]) == (401, "mfa_invalid")
    used = [r for r in rows(harbor, MfaRecoveryCode, user_id=harbor.admin_user.id) if r.used_at is not None]
    assert len(used) == 1
    # The other nine still work.
    assert _token(client, harbor.admin_user.email, enrolled.recovery_codes[4]).status_code == 200
    logins = [e.data.get("mfa") for e in _actions(harbor, "user.login")]
    assert logins.count("recovery") == 2


def test_wrong_codes_are_throttled_like_wrong_passwords(
    client: TestClient, harbor: Practice, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_settings(), "login_backoff_base_seconds", 60.0)
    enrolled = enrol(harbor.admin)
    for attempt in range(get_settings().login_free_failures):
        response = _token(client, harbor.admin_user.email, f"{attempt:06d}")
        assert response.json()["code"] == "mfa_invalid", attempt
    # Now even the right code waits.
    blocked = _token(client, harbor.admin_user.email, enrolled.code(mfa.current_step()))
    assert blocked.status_code == 429
    assert 0 < int(blocked.headers["retry-after"]) <= 60
    # Other accounts are not held back.
    assert _token(client, harbor.doctor_user.email).status_code == 200


def test_an_account_without_mfa_signs_in_as_before(client: TestClient, harbor: Practice) -> None:
    assert _token(client, harbor.doctor_user.email).status_code == 200
    # A code sent anyway is ignored for an account without MFA.
    assert _token(client, harbor.patient_user.email, "123456").status_code == 200


# -- the browser: two steps, and the enrolment-only session -----------------------------------------------------


def test_browser_login_with_mfa_asks_for_the_code_then_signs_in(client: TestClient, harbor: Practice) -> None:
    enrolled = enrol(harbor.admin)
    name = get_settings().session_cookie
    first = client.post(
        "/auth/login",
        data={"email": harbor.admin_user.email, "password": TEST_PASSWORD, "next": "/admin/clinics"},
        headers=_origin(client),
    )
    assert first.status_code == 303
    assert first.headers["location"] == "/login/mfa?next=%2Fadmin%2Fclinics"
    jar = _cookies(first)
    assert name not in jar  # no session yet
    pending = jar[mfa.pending_cookie_name()]
    assert pending["httponly"] is True and int(pending["max-age"]) == mfa.PENDING_SECONDS
    assert rows(harbor, UserSession) == []

    wrong = client.post("/auth/login/mfa", data={"code": "000000", "next": "/admin/clinics"}, headers=_origin(client))
    assert wrong.headers["location"] == "/login/mfa?error=invalid&next=%2Fadmin%2Fclinics"
    assert name not in _cookies(wrong)

    code = enrolled.code(mfa.current_step())
    ok = client.post("/auth/login/mfa", data={"code": code, "next": "/admin/clinics"}, headers=_origin(client))
    assert ok.headers["location"] == "/admin/clinics"
    session = _cookies(ok)[name].value
    actor = actor_from_session(session)
    assert actor is not None and actor.role == Role.ADMIN and actor.user_id == harbor.admin_user.id

    # The same code again, through a fresh password step: refused.
    client.cookies.clear()
    client.post(
        "/auth/login", data={"email": harbor.admin_user.email, "password": TEST_PASSWORD}, headers=_origin(client)
    )
    replay = client.post("/auth/login/mfa", data={"code": code}, headers=_origin(client))
    assert replay.headers["location"] == "/login/mfa?error=invalid"


def test_the_code_step_needs_a_genuine_pending_token(client: TestClient, harbor: Practice) -> None:
    enrolled = enrol(harbor.admin)
    code = enrolled.code(mfa.current_step())
    # No password step at all.
    bare = client.post("/auth/login/mfa", data={"code": code}, headers=_origin(client))
    assert bare.headers["location"] == "/login?error=mfa_expired"
    # A forged one.
    client.cookies.set(mfa.pending_cookie_name(), "eyJ1IjoiMSJ9.forged")
    forged = client.post("/auth/login/mfa", data={"code": code}, headers=_origin(client))
    assert forged.headers["location"] == "/login?error=mfa_expired"
    # One whose password has changed since.
    with UnitOfWork(harbor.system) as uow:
        user = uow.session.get(User, harbor.admin_user.id)
        assert user is not None
        token = mfa.issue_pending_token(user, Role.ADMIN)
        user.password_hash = user.password_hash + "x"
        uow.session.add(user)
        uow.commit()
    client.cookies.set(mfa.pending_cookie_name(), token)
    stale = client.post("/auth/login/mfa", data={"code": code}, headers=_origin(client))
    assert stale.headers["location"] == "/login?error=mfa_expired"
    assert rows(harbor, UserSession) == []


def test_an_admin_without_mfa_gets_a_session_only_for_enrolment(client: TestClient, harbor: Practice) -> None:
    name = get_settings().session_cookie
    response = client.post(
        "/auth/login", data={"email": harbor.admin_user.email, "password": TEST_PASSWORD}, headers=_origin(client)
    )
    assert response.headers["location"] == "/account/mfa"
    token = _cookies(response)[name].value
    assert actor_from_session(token) is None  # no page, no handler accepts it
    actor = mfa.enrolment_actor_from_session(token)
    assert actor is not None and actor.user_id == harbor.admin_user.id

    with UnitOfWork(actor) as uow:
        secret = mfa.begin_enrolment(actor, uow).secret
        uow.commit()
    (user,) = rows(harbor, User, id=harbor.admin_user.id)
    assert user.mfa_pending_secret_encrypted and secret not in user.mfa_pending_secret_encrypted
    with UnitOfWork(actor) as uow, pytest.raises(Exception, match="not valid"):
        mfa.confirm_enrolment(actor, uow, code="000000" if pyotp.TOTP(secret).now() != "000000" else "111111")
    with UnitOfWork(actor) as uow:
        codes = mfa.confirm_enrolment(actor, uow, code=pyotp.TOTP(secret).now())
        uow.commit()
    assert len(codes) == 10
    # The same cookie is now an ordinary session.
    assert actor_from_session(token) is not None
    (user,) = rows(harbor, User, id=harbor.admin_user.id)
    assert user.mfa_secret_encrypted and secret not in user.mfa_secret_encrypted
    assert user.mfa_pending_secret_encrypted is None
    stored = [r.code_hash for r in rows(harbor, MfaRecoveryCode, user_id=user.id)]
    assert len(stored) == 10 and not any(c in h for c in codes for h in stored)
    assert len(_actions(harbor, "user.mfa_enrolled")) == 1


def test_the_secret_is_never_read_back(client: TestClient, harbor: Practice) -> None:
    headers = bearer(client, harbor.doctor_user.email)
    started = client.post("/api/v1/me/mfa/enrol", headers=headers)
    assert started.status_code == 200
    secret = started.json()["secret"]
    assert started.json()["qr_svg_data_uri"].startswith("data:image/svg+xml")
    confirmed = client.post("/api/v1/me/mfa/confirm", json={"code": pyotp.TOTP(secret).now()}, headers=headers)
    assert confirmed.status_code == 200 and len(confirmed.json()["recovery_codes"]) == 10
    status = client.get("/api/v1/me/mfa", headers=headers)
    assert status.json()["enrolled"] is True and status.json()["recovery_codes_left"] == 10
    assert secret not in status.text
    again = client.post("/api/v1/me/mfa/enrol", headers=headers)
    assert (again.status_code, again.json()["code"]) == (422, "mfa_already_enrolled")
    assert secret not in again.text


def test_recovery_codes_can_be_replaced(client: TestClient, harbor: Practice) -> None:
    enrolled = enrol(harbor.doctor)
    headers = bearer(client, harbor.doctor_user.email, totp=enrolled.code(mfa.current_step()))
    refused = client.post("/api/v1/me/mfa/recovery-codes", json={"code": "000000"}, headers=headers)
    assert refused.status_code == 422
    fresh = client.post(
        "/api/v1/me/mfa/recovery-codes", json={"code": enrolled.code(mfa.current_step() + 1)}, headers=headers
    )
    assert fresh.status_code == 200, fresh.text
    new_codes = fresh.json()["recovery_codes"]
    assert _token(client, harbor.doctor_user.email, enrolled.recovery_codes[0]).json()["code"] == "mfa_invalid"
    assert _token(client, harbor.doctor_user.email, new_codes[0]).status_code == 200


# -- the admin's reset, and the practice policy ---------------------------------------------------------------


def test_an_admin_resets_a_clinicians_mfa_audited(client: TestClient, harbor: Practice) -> None:
    enrolled = enrol(harbor.doctor)
    doctor_headers = bearer(client, harbor.doctor_user.email, totp=enrolled.code(mfa.current_step()))
    enrol(harbor.admin)
    admin_headers = bearer(client, harbor.admin_user.email)  # with the admin's next code
    assert client.post(f"/api/v1/users/{harbor.doctor_user.id}/mfa/reset", headers=doctor_headers).status_code == 403

    response = client.post(f"/api/v1/users/{harbor.doctor_user.id}/mfa/reset", headers=admin_headers)
    assert response.status_code == 204
    (user,) = rows(harbor, User, id=harbor.doctor_user.id)
    assert user.mfa_secret_encrypted is None and user.mfa_last_step is None
    assert rows(harbor, MfaRecoveryCode, user_id=user.id) == []
    (event,) = _actions(harbor, "user.mfa_reset")
    assert event.entity_id == harbor.doctor_user.id and event.actor_user_id == harbor.admin_user.id
    assert event.data["was_enrolled"] is True
    # The clinician's sessions ended; they sign in with the password alone again.
    assert client.get("/api/v1/me", headers=doctor_headers).status_code == 401
    assert _token(client, harbor.doctor_user.email).status_code == 200


def test_a_reset_never_reaches_another_practice(client: TestClient, harbor: Practice, summit: Practice) -> None:
    enrol(summit.doctor)
    enrol(harbor.admin)
    admin_headers = bearer(client, harbor.admin_user.email)
    foreign = client.post(f"/api/v1/users/{summit.doctor_user.id}/mfa/reset", headers=admin_headers)
    missing = client.post(f"/api/v1/users/{uuid.uuid4()}/mfa/reset", headers=admin_headers)
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == missing.json()
    (user,) = rows(summit, User, id=summit.doctor_user.id)
    assert user.mfa_secret_encrypted is not None
    assert _actions(summit, "user.mfa_reset") == [] and _actions(harbor, "user.mfa_reset") == []


def test_a_practice_can_require_mfa_of_its_clinicians(client: TestClient, harbor: Practice, summit: Practice) -> None:
    enrol(harbor.admin)
    admin_headers = bearer(client, harbor.admin_user.email)
    assert client.get("/api/v1/mfa-policy", headers=admin_headers).json() == {"clinicians_required": False}
    doctor_login = {"email": harbor.doctor_user.email, "password": TEST_PASSWORD}
    assert client.post("/auth/login", data=doctor_login, headers=_origin(client)).headers["location"] == "/doctor"

    client.cookies.clear()  # a bearer request, not the browser's
    changed = client.put("/api/v1/mfa-policy", json={"clinicians_required": True}, headers=admin_headers)
    assert changed.json() == {"clinicians_required": True}
    assert len(_actions(harbor, "practice.mfa_policy_changed")) == 1
    client.cookies.clear()
    response = client.post("/auth/login", data=doctor_login, headers=_origin(client))
    assert response.headers["location"] == "/account/mfa"
    # Only this practice: Summit's clinicians are not asked.
    summit_login = {"email": summit.doctor_user.email, "password": TEST_PASSWORD}
    client.cookies.clear()
    assert client.post("/auth/login", data=summit_login, headers=_origin(client)).headers["location"] == "/doctor"
    # Only admins set it.
    client.cookies.clear()
    doctor_headers = bearer(client, summit.doctor_user.email)
    assert (
        client.put("/api/v1/mfa-policy", json={"clinicians_required": False}, headers=doctor_headers).status_code == 403
    )


# -- the API token of someone who must use MFA and has not set it up ---------------------------------------------


def _refused_for_enrolment(response: httpx.Response) -> bool:
    return response.status_code == 403 and response.json()["code"] == "mfa_enrolment_required"


def test_an_unenrolled_admins_password_only_token_can_only_enrol(client: TestClient, harbor: Practice) -> None:
    granted = _token(client, harbor.admin_user.email)
    assert granted.status_code == 200, granted.text
    headers = {"Authorization": f"Bearer {granted.json()['access_token']}"}

    # Admin data, admin writes, and even the all-roles listings: refused with a code and a way forward.
    audit = client.get("/api/v1/audit-events", headers=headers)
    assert _refused_for_enrolment(audit), audit.text
    assert "POST /api/v1/me/mfa/enrol" in audit.json()["detail"]
    assert granted.json()["mfa_enrolment_required"] is True
    assert _refused_for_enrolment(client.get("/api/v1/clinics", headers=headers))
    created = client.post("/api/v1/clinics", json={"name": "Sneaky", "timezone": "UTC"}, headers=headers)
    assert _refused_for_enrolment(created)
    assert _refused_for_enrolment(client.put("/api/v1/mfa-policy", json={"clinicians_required": True}, headers=headers))
    password = {"current_password": TEST_PASSWORD, "new_password": "another long password"}
    assert _refused_for_enrolment(client.post("/api/v1/me/password", json=password, headers=headers))
    assert len(rows(harbor, Clinic)) == 2
    # A refreshed token is bound to the same session, so it is just as limited.
    refreshed = client.post("/api/v1/auth/refresh", json={"refresh_token": granted.json()["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    headers = {"Authorization": f"Bearer {refreshed.json()['access_token']}"}
    assert _refused_for_enrolment(client.get("/api/v1/audit-events", headers=headers))

    # What it can do: say who it is, show the MFA status, and set MFA up.
    me = client.get("/api/v1/me", headers=headers)
    assert (me.status_code, me.json()["role"]) == (200, "admin")
    status = client.get("/api/v1/me/mfa", headers=headers)
    assert status.status_code == 200 and status.json()["required"] is True and status.json()["enrolled"] is False
    started = client.post("/api/v1/me/mfa/enrol", headers=headers)
    assert started.status_code == 200, started.text
    secret = started.json()["secret"]
    confirmed = client.post("/api/v1/me/mfa/confirm", json={"code": pyotp.TOTP(secret).now()}, headers=headers)
    assert confirmed.status_code == 200, confirmed.text

    # Once set up, the same token works fully; a new sign-in needs the code.
    assert client.get("/api/v1/audit-events", headers=headers).status_code == 200
    assert client.get("/api/v1/clinics", headers=headers).status_code == 200
    again = _token(client, harbor.admin_user.email)
    assert (again.status_code, again.json()["code"]) == (401, "mfa_required")


def test_a_token_limited_to_enrolment_can_sign_out(client: TestClient, harbor: Practice) -> None:
    granted = _token(client, harbor.admin_user.email).json()
    headers = {"Authorization": f"Bearer {granted['access_token']}"}
    assert client.post("/api/v1/auth/logout", headers=headers).status_code == 204
    assert client.get("/api/v1/me", headers=headers).status_code == 401
    assert client.post("/api/v1/auth/refresh", json={"refresh_token": granted["refresh_token"]}).status_code == 401


def test_a_clinician_who_must_use_mfa_gets_a_token_only_for_enrolment(
    client: TestClient, harbor: Practice, summit: Practice
) -> None:
    with UnitOfWork(summit.admin) as uow:
        mfa.set_mfa_policy(summit.admin, uow, clinicians_required=True)
        uow.commit()
    limited = _token(client, summit.doctor_user.email)
    assert limited.status_code == 200 and limited.json()["mfa_enrolment_required"] is True
    headers = {"Authorization": f"Bearer {limited.json()['access_token']}"}
    assert _refused_for_enrolment(client.get("/api/v1/waitlists", headers=headers))
    assert client.get("/api/v1/me/mfa", headers=headers).json()["required"] is True
    # Where the practice does not ask it of clinicians, and for patients, the password alone is a full sign-in.
    for email in (harbor.doctor_user.email, summit.patient_user.email):
        full = _token(client, email)
        assert full.json()["mfa_enrolment_required"] is False
        listing = client.get("/api/v1/waitlists", headers={"Authorization": f"Bearer {full.json()['access_token']}"})
        assert listing.status_code == 200, listing.text


def test_the_enrolment_only_browser_session_reaches_no_api_route(client: TestClient, harbor: Practice) -> None:
    # The web sign-in of the same admin: its cookie opens only /account/mfa, and the REST API takes bearer tokens only.
    response = client.post(
        "/auth/login", data={"email": harbor.admin_user.email, "password": TEST_PASSWORD}, headers=_origin(client)
    )
    assert response.headers["location"] == "/account/mfa"
    name = get_settings().session_cookie
    token = _cookies(response)[name].value
    assert mfa.enrolment_actor_from_session(token) is not None
    client.cookies.clear()
    sent = {"Cookie": f"{name}={token}", **_origin(client)}
    for path in ("/api/v1/audit-events", "/api/v1/me", "/api/v1/me/mfa"):
        refused = client.get(path, headers=sent)
        assert (refused.status_code, refused.json()["detail"]) == (401, "missing bearer token"), path


def test_the_factories_sign_an_enrolled_admin_in_again_and_again(client: TestClient, summit: Practice) -> None:
    # tests/factories.py enrols every admin; bearer() must find a code the server has not accepted yet, every time,
    # without weakening the replay check: two TOTP steps, then recovery codes (more once those are spent).
    tokens = {bearer(client, summit.admin_user.email)["Authorization"] for _ in range(14)}
    assert len(tokens) == 14
    methods = [e.data["mfa"] for e in _actions(summit, "user.login")]
    assert len(methods) == 14 and set(methods) == {"totp", "recovery"}
    assert _actions(summit, "user.mfa_failed") == []
