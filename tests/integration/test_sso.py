"""Single sign-on for staff: the whole OpenID Connect round trip against a local provider (real HTTP), and every
way a sign-in must be refused (state, nonce, audience, issuer, signature, unverified e-mail, another practice's
e-mail, a patient, an unknown e-mail); the admin's settings (the secret is stored encrypted and never read back)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pyotp
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from backend.api.app import api
from backend.audit.models import AuditEvent
from backend.db import UnitOfWork
from backend.identity import mfa, sso
from backend.identity.models import PracticeSSO, User, UserSession
from backend.identity.service import actor_from_session
from backend.settings import get_settings
from backend.tenancy.context import Actor, Role
from tests.conftest import free_port
from tests.factories import Practice, add_user, bearer, call, make_practice, remove_mfa, rows
from tests.oidc_provider import LocalProvider, OidcUser, serve_provider

PUBLIC_URL = "http://localhost:3000"
CLIENT_ID = "waitwell-test-client"
CLIENT_SECRET = "op-client-secret-0123456789"


@pytest.fixture(scope="module")
def provider() -> Iterator[LocalProvider]:
    uris = {f"{PUBLIC_URL}/auth/sso/{slug}/callback" for slug in ("harbor", "summit")}
    with serve_provider(CLIENT_ID, CLIENT_SECRET, uris) as op:
        yield op


@pytest.fixture(autouse=True)
def sso_settings(monkeypatch: pytest.MonkeyPatch, provider: LocalProvider) -> Iterator[None]:
    settings = get_settings()
    monkeypatch.setattr(settings, "public_url", PUBLIC_URL)
    monkeypatch.setattr(settings, "sso_allow_http_loopback", True)
    provider.tamper = {}
    provider.user = None
    provider.auth_methods = ("client_secret_basic", "client_secret_post")
    provider.requests.clear()
    provider.token_requests.clear()
    sso.clear_caches()
    yield
    sso.clear_caches()


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(api, follow_redirects=False) as c:
        yield c


@pytest.fixture
def harbor(db: sa.Engine, provider: LocalProvider) -> Practice:
    practice = make_practice("Harbor Mental Health", "harbor")
    configure(practice, provider.issuer)
    return practice


@pytest.fixture
def summit(db: sa.Engine, provider: LocalProvider) -> Practice:
    practice = make_practice("Summit Counseling", "summit", zones=("America/Denver", "Asia/Tokyo"))
    configure(practice, provider.issuer)
    return practice


def configure(practice: Practice, issuer: str, **fields: Any) -> sso.SsoConfigOut:
    """Set the practice's provider; by default its MFA is trusted (the MFA tests below say otherwise)."""
    data = {
        "issuer": issuer,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "enabled": True,
        "trust_idp_mfa": True,
        **fields,
    }
    return call(practice.admin, sso.put_sso_config, sso.SsoConfigIn(**data))


def _as(provider: LocalProvider, email: str, **kwargs: Any) -> None:
    provider.user = OidcUser(sub=f"sub-{uuid.uuid4().hex[:8]}", email=email, **kwargs)


def _local(url: str) -> str:
    assert url.startswith(PUBLIC_URL), url
    return url.removeprefix(PUBLIC_URL)


def to_provider(client: TestClient, provider: LocalProvider, slug: str = "harbor") -> str:
    """Start at our app, then go to the provider for real (HTTP); return the callback path it sends back."""
    start = client.get(f"/auth/sso/{slug}/start")
    assert start.status_code == 303, start.text
    location = start.headers["location"]
    assert location.startswith(f"{provider.issuer}/authorize?"), location
    query = parse_qs(urlsplit(location).query)
    assert query["code_challenge_method"] == ["S256"] and query["nonce"] and query["state"]
    assert query["redirect_uri"] == [f"{PUBLIC_URL}/auth/sso/{slug}/callback"]
    at_provider = httpx.get(location, follow_redirects=False, timeout=10)
    assert at_provider.status_code in (302, 307), at_provider.text
    return _local(at_provider.headers["location"])


def sign_in(client: TestClient, provider: LocalProvider, slug: str = "harbor") -> httpx.Response:
    return client.get(to_provider(client, provider, slug))


def session_cookie(response: httpx.Response) -> str | None:
    name = get_settings().session_cookie
    for header in response.headers.get_list("set-cookie"):
        if header.startswith(f"{name}=") and "Max-Age=0" not in header and f'{name}=""' not in header:
            return header.split(";", 1)[0].split("=", 1)[1]
    return None


def refused_with(response: httpx.Response, reason: str) -> None:
    assert response.status_code == 303, response.text
    assert response.headers["location"].startswith(f"/login?error={reason}"), response.headers["location"]
    assert session_cookie(response) is None


def _sessions(practice: Practice) -> int:
    return len(rows(practice, UserSession))


# -- the round trip ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("who", "home", "role"), [("admin", "/admin", Role.ADMIN), ("doctor", "/doctor", Role.DOCTOR)])
def test_staff_sign_in_round_trip_starts_a_browser_session(
    client: TestClient, provider: LocalProvider, harbor: Practice, who: str, home: str, role: Role
) -> None:
    _as(provider, harbor.emails[who].upper())  # e-mail case does not matter
    response = sign_in(client, provider)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == home
    cookie = session_cookie(response)
    assert cookie is not None
    actor = actor_from_session(cookie)
    assert actor is not None and actor.role == role and actor.tenant_id == harbor.tenant_id
    assert actor.user_id == (harbor.admin_user if who == "admin" else harbor.doctor_user).id
    # The state cookie is single use: it is cleared on the way in.
    assert any(h.startswith(f"{sso.state_cookie_name()}=") for h in response.headers.get_list("set-cookie"))
    # The code went to the token endpoint with the client's credentials (HTTP Basic) and the PKCE verifier.
    assert provider.token_requests == [{"basic": "True", "client_id": ""}]
    [event] = [e for e in rows(harbor, AuditEvent, action="user.login")]
    assert event.data["method"] == "sso" and event.data["issuer"] == provider.issuer
    assert event.entity_id == actor.user_id
    assert event.data["mfa_by_provider"] is True and event.data["mfa"] == "provider"


def test_next_path_survives_the_round_trip(client: TestClient, provider: LocalProvider, harbor: Practice) -> None:
    _as(provider, harbor.emails["admin"])
    start = client.get("/auth/sso/start", params={"practice": "Harbor", "next": "/admin/audit"})
    assert start.status_code == 303 and start.headers["location"] == "/auth/sso/harbor/start?next=/admin/audit"
    first = client.get(start.headers["location"])
    back = httpx.get(first.headers["location"], follow_redirects=False, timeout=10).headers["location"]
    response = client.get(_local(back))
    assert response.headers["location"] == "/admin/audit"


def test_client_secret_post_when_the_provider_wants_it(
    client: TestClient, provider: LocalProvider, harbor: Practice
) -> None:
    provider.auth_methods = ("client_secret_post",)
    _as(provider, harbor.emails["doctor"])
    assert sign_in(client, provider).headers["location"] == "/doctor"
    assert provider.token_requests == [{"basic": "False", "client_id": CLIENT_ID}]


def test_email_from_userinfo_when_not_in_the_id_token(
    client: TestClient, provider: LocalProvider, harbor: Practice
) -> None:
    _as(provider, harbor.emails["admin"], email_in_id_token=False)
    assert sign_in(client, provider).headers["location"] == "/admin"
    assert "/userinfo" in provider.requests


def test_discovery_and_keys_are_cached(client: TestClient, provider: LocalProvider, harbor: Practice) -> None:
    _as(provider, harbor.emails["admin"])
    for _ in range(3):
        assert sign_in(client, provider).headers["location"] == "/admin"
    assert provider.requests.count("/.well-known/openid-configuration") == 1
    assert provider.requests.count("/jwks") == 1


# -- refusals ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tamper", "what"),
    [
        ({"nonce": "not-the-nonce-we-sent"}, "nonce"),
        ({"nonce": None}, "no nonce"),
        ({"aud": "another-client"}, "audience"),
        ({"aud": ["another-client", CLIENT_ID]}, "two audiences without azp = us"),
        ({"iss": "https://evil.example"}, "issuer"),
        ({"exp": 1_000_000_000}, "expired"),
        ({"sign_with": "other_key"}, "signature"),
        ({"sign_with": "hs256"}, "HMAC with the client secret"),
    ],
)
def test_a_bad_id_token_is_refused(
    client: TestClient, provider: LocalProvider, harbor: Practice, tamper: dict[str, Any], what: str
) -> None:
    provider.tamper = tamper
    _as(provider, harbor.emails["admin"])
    refused_with(sign_in(client, provider), "sso_invalid")
    assert _sessions(harbor) == 0
    assert [e.data["reason"] for e in rows(harbor, AuditEvent, action="user.sso_refused")] == ["id_token"]


def test_wrong_state_is_refused(client: TestClient, provider: LocalProvider, harbor: Practice) -> None:
    _as(provider, harbor.emails["admin"])
    path = to_provider(client, provider)
    forged = path.replace("state=", "state=x", 1)
    refused_with(client.get(forged), "sso_expired")
    assert provider.token_requests == []  # the code was never even exchanged


def test_callback_without_our_state_cookie_is_refused(
    client: TestClient, provider: LocalProvider, harbor: Practice
) -> None:
    """Login CSRF: a callback URL made in another browser (the attacker's) does not sign this one in."""
    _as(provider, harbor.emails["admin"])
    path = to_provider(client, provider)
    with TestClient(api, follow_redirects=False) as victim:
        refused_with(victim.get(path), "sso_expired")
    assert provider.token_requests == []


def test_state_cookie_of_another_practice_is_refused(
    client: TestClient, provider: LocalProvider, harbor: Practice, summit: Practice
) -> None:
    _as(provider, harbor.emails["admin"])
    path = to_provider(client, provider, "harbor")
    refused_with(client.get(path.replace("/harbor/", "/summit/")), "sso_expired")


def test_a_callback_is_used_once(client: TestClient, provider: LocalProvider, harbor: Practice) -> None:
    _as(provider, harbor.emails["admin"])
    path = to_provider(client, provider)
    first = client.get(path)
    assert first.headers["location"] == "/admin"
    client.cookies.clear()
    refused_with(client.get(path), "sso_expired")


def test_unverified_email_is_refused(client: TestClient, provider: LocalProvider, harbor: Practice) -> None:
    _as(provider, harbor.emails["admin"], email_verified=False)
    refused_with(sign_in(client, provider), "sso_unverified")
    _as(provider, harbor.emails["admin"], email_verified=None)
    refused_with(sign_in(client, provider), "sso_unverified")
    assert _sessions(harbor) == 0


def test_email_of_another_practice_only_is_refused(
    client: TestClient, provider: LocalProvider, harbor: Practice, summit: Practice
) -> None:
    _as(provider, summit.emails["admin"])
    refused_with(sign_in(client, provider, "harbor"), "sso_no_account")
    assert _sessions(harbor) == 0 and _sessions(summit) == 0
    [event] = rows(harbor, AuditEvent, action="user.sso_refused")
    assert event.data == {"reason": "sso_no_account"}
    assert rows(summit, AuditEvent, action="user.sso_refused") == []


def test_same_email_in_two_practices_signs_in_only_where_it_started(
    client: TestClient, provider: LocalProvider, harbor: Practice, summit: Practice
) -> None:
    shared = "shared@clinics.test"
    add_user(harbor, shared, Role.ADMIN)
    summit_user = add_user(summit, shared, Role.DOCTOR, provider_id=summit.provider.id)
    _as(provider, shared)
    response = sign_in(client, provider, "summit")
    actor = actor_from_session(session_cookie(response))
    assert actor is not None and actor.tenant_id == summit.tenant_id and actor.user_id == summit_user.id
    assert response.headers["location"] == "/doctor"


def test_a_patient_is_refused(client: TestClient, provider: LocalProvider, harbor: Practice) -> None:
    _as(provider, harbor.emails["patient"])
    refused_with(sign_in(client, provider), "sso_not_staff")
    [event] = rows(harbor, AuditEvent, action="user.sso_refused")
    assert event.entity_id == harbor.patient_user.id
    assert _sessions(harbor) == 0


def test_an_unknown_email_is_refused_and_nothing_is_created(
    client: TestClient, provider: LocalProvider, harbor: Practice
) -> None:
    users = len(rows(harbor, User))
    _as(provider, "stranger@harbor.test")
    refused_with(sign_in(client, provider), "sso_no_account")
    assert len(rows(harbor, User)) == users


def test_a_disabled_user_is_refused(client: TestClient, provider: LocalProvider, harbor: Practice) -> None:
    call(harbor.admin, __import__("backend.identity.service", fromlist=["x"]).disable_user, harbor.doctor_user.id)
    _as(provider, harbor.emails["doctor"])
    refused_with(sign_in(client, provider), "sso_no_account")


def test_the_provider_refusing_lands_on_the_login_page(
    client: TestClient, provider: LocalProvider, harbor: Practice
) -> None:
    provider.user = None  # the provider answers access_denied
    refused_with(sign_in(client, provider), "sso_denied")


def test_unknown_or_disabled_practice_offers_no_sso(
    client: TestClient, provider: LocalProvider, harbor: Practice
) -> None:
    refused_with(client.get("/auth/sso/nowhere/start"), "sso_unavailable")
    configure(harbor, provider.issuer, enabled=False)
    refused_with(client.get("/auth/sso/harbor/start"), "sso_unavailable")
    refused_with(client.get("/auth/sso/start", params={"practice": "../x"}), "sso_unavailable")


def test_an_unreachable_provider_is_a_clear_refusal(client: TestClient, harbor: Practice) -> None:
    configure(harbor, f"http://127.0.0.1:{free_port()}")
    refused_with(client.get("/auth/sso/harbor/start"), "sso_provider")


def test_a_provider_whose_discovery_names_another_issuer_is_refused(
    client: TestClient, provider: LocalProvider, harbor: Practice
) -> None:
    configure(harbor, provider.issuer + "/")  # the document says the issuer without the slash
    refused_with(client.get("/auth/sso/harbor/start"), "sso_provider")


# -- MFA: only a trusted provider's multi-factor sign-in stands in for ours -------------------------------


@pytest.mark.parametrize(
    ("trust", "amr", "satisfied"),
    [
        (False, ["pwd", "mfa"], False),
        (True, ["pwd"], False),
        (True, ["pwd", "otp"], True),
        (True, ["hwk"], True),
        (True, None, True),
    ],
)
def test_mfa_by_provider_only_when_trusted(
    client: TestClient,
    provider: LocalProvider,
    harbor: Practice,
    trust: bool,
    amr: list[str] | None,
    satisfied: bool,
) -> None:
    configure(harbor, provider.issuer, trust_idp_mfa=trust)
    _as(provider, harbor.emails["doctor"], amr=amr)
    sign_in(client, provider)
    [event] = rows(harbor, AuditEvent, action="user.login")
    assert event.data["mfa_by_provider"] is satisfied


def enrol_totp(actor: Actor) -> pyotp.TOTP:
    """Set up our own TOTP for `actor`, confirmed with the previous step's code (the current one stays unused)."""
    with UnitOfWork(actor) as uow:
        secret = mfa.begin_enrolment(actor, uow).secret
        uow.commit()
    totp = pyotp.TOTP(secret)
    with UnitOfWork(actor) as uow:
        mfa.confirm_enrolment(actor, uow, code=totp.at((mfa.current_step() - 1) * mfa.STEP_SECONDS))
        uow.commit()
    return totp


def test_untrusted_provider_and_our_totp_leads_to_the_code_step(
    client: TestClient, provider: LocalProvider, harbor: Practice
) -> None:
    configure(harbor, provider.issuer, trust_idp_mfa=False)
    totp = enrol_totp(harbor.doctor)
    _as(provider, harbor.emails["doctor"], amr=["pwd", "mfa"])
    response = sign_in(client, provider)
    assert response.status_code == 303 and response.headers["location"] == "/login/mfa"
    assert session_cookie(response) is None
    logins = [e.action for e in rows(harbor, AuditEvent) if e.action in ("user.login", "user.sso_verified")]
    assert logins == ["user.sso_verified"]
    # The same second step as after a password: our code, then the session.
    code = client.post(
        "/auth/login/mfa", data={"code": totp.now()}, headers={"Origin": str(client.base_url).rstrip("/")}
    )
    assert code.status_code == 303 and code.headers["location"] == "/doctor", code.headers
    actor = actor_from_session(session_cookie(code))
    assert actor is not None and actor.user_id == harbor.doctor_user.id


def test_trusted_provider_mfa_skips_our_code(client: TestClient, provider: LocalProvider, harbor: Practice) -> None:
    enrol_totp(harbor.doctor)
    _as(provider, harbor.emails["doctor"], amr=["pwd", "otp"])
    response = sign_in(client, provider)
    assert response.headers["location"] == "/doctor"
    assert actor_from_session(session_cookie(response)) is not None


def test_untrusted_provider_admin_without_totp_must_enrol(
    client: TestClient, provider: LocalProvider, harbor: Practice
) -> None:
    """Admins always need MFA: with the provider's not trusted, the sign-in leads to our enrolment only."""
    remove_mfa(harbor, harbor.admin_user)  # an admin who has not set it up yet (the factories enrol admins)
    configure(harbor, provider.issuer, trust_idp_mfa=False)
    _as(provider, harbor.emails["admin"])
    response = sign_in(client, provider)
    assert response.headers["location"] == "/account/mfa"
    assert actor_from_session(session_cookie(response)) is None  # not a full session
    assert mfa.enrolment_actor_from_session(session_cookie(response)) is not None


# -- the admin's settings ------------------------------------------------------------------------------


def test_admin_sets_and_reads_sso_config_without_the_secret(
    client: TestClient, provider: LocalProvider, db: sa.Engine
) -> None:
    harbor = make_practice("Harbor Mental Health", "harbor")
    headers = bearer(client, harbor.emails["admin"])
    assert client.get("/api/v1/sso-config", headers=headers).status_code == 404
    body = {"issuer": provider.issuer, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "enabled": True}
    put = client.put("/api/v1/sso-config", json=body, headers=headers)
    assert put.status_code == 200, put.text
    got = client.get("/api/v1/sso-config", headers=headers)
    assert got.json() == {
        "issuer": provider.issuer,
        "client_id": CLIENT_ID,
        "has_client_secret": True,
        "enabled": True,
        "trust_idp_mfa": False,
        "redirect_uri": f"{PUBLIC_URL}/auth/sso/harbor/callback",
    }
    assert CLIENT_SECRET not in put.text + got.text
    # Stored encrypted: the raw column is a Fernet token, not the secret.
    with db.connect() as conn:
        raw = conn.execute(sa.text("SELECT client_secret_encrypted FROM practice_sso")).scalar_one()
    assert CLIENT_SECRET not in raw and raw.startswith("gAAAA")
    # Changing other fields without a secret keeps the stored one.
    body.pop("client_secret")
    again = client.put("/api/v1/sso-config", json={**body, "trust_idp_mfa": True}, headers=headers)
    assert again.status_code == 200 and again.json()["trust_idp_mfa"] is True
    [config] = rows(harbor, PracticeSSO)
    assert config.client_secret_encrypted == raw
    events = rows(harbor, AuditEvent, action="sso.configured")
    assert sorted(e.data["secret_changed"] for e in events) == [False, True]
    assert all(CLIENT_SECRET not in str(e.data) for e in events)
    # And the whole flow works with what the API stored.
    _as(provider, harbor.emails["admin"])
    assert sign_in(client, provider).headers["location"] == "/admin"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"issuer": "http://idp.example.com", "client_id": "c", "client_secret": "s"}, "issuer"),
        ({"issuer": "https://user:pw@idp.example.com", "client_id": "c", "client_secret": "s"}, "issuer"),
        ({"issuer": "https://idp.example.com", "client_id": "  ", "client_secret": "s"}, "client_id"),
        ({"issuer": "https://idp.example.com", "client_id": "c"}, "client_secret"),
    ],
)
def test_bad_sso_config_is_a_422_and_changes_nothing(
    client: TestClient, db: sa.Engine, body: dict[str, Any], field: str
) -> None:
    harbor = make_practice("Harbor Mental Health", "harbor")
    response = client.put("/api/v1/sso-config", json=body, headers=bearer(client, harbor.emails["admin"]))
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_failed" and field in response.text
    assert rows(harbor, PracticeSSO) == []


def test_only_an_admin_may_see_or_set_sso_config(client: TestClient, provider: LocalProvider, harbor: Practice) -> None:
    for who in ("doctor", "patient"):
        headers = bearer(client, harbor.emails[who])
        assert client.get("/api/v1/sso-config", headers=headers).status_code == 403
        body = {"issuer": "https://idp.example.com", "client_id": "x", "client_secret": "y", "enabled": True}
        assert client.put("/api/v1/sso-config", json=body, headers=headers).status_code == 403
    [config] = rows(harbor, PracticeSSO)
    assert config.issuer == provider.issuer
