"""Single sign-on for staff through a practice's OpenID Connect provider (Google Workspace, Entra, Okta, Keycloak).

The flow (authorization code with PKCE, through Authlib's OAuth 2 client):
- `begin_sign_in(slug)`: the practice's provider metadata (discovery, cached), a fresh state, nonce and PKCE
  verifier kept in a short-lived, encrypted and authenticated cookie, and the provider's authorization URL.
- `complete_sign_in(slug, ...)`: the state cookie must match; the code is exchanged at the provider's token
  endpoint; the ID token is verified (signature against the provider's JWKS, iss, aud/azp, exp, iat, nonce); the
  e-mail must be verified by the provider; it is matched to a staff account (doctor, admin) of THAT practice only.
  Nothing is ever created: an unknown e-mail or a patient account is refused.

Whether the sign-in counts as multi-factor: only when the practice trusts its provider's MFA, and the ID token does
not show a sign-in without a second factor (an `amr` claim present without any multi-factor method). Otherwise it
goes on like a right password (backend/identity/mfa.py): our TOTP code for an enrolled account, enrolment first
where MFA is required.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import secrets
import threading
import time
import uuid
import warnings
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import authlib.deprecate  # first, on its own: on import it puts an "always" filter before ours (below)
import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from pydantic import BaseModel, Field
from sqlalchemy import func
from sqlmodel import col, select

from backend.audit.service import record
from backend.crypto import DecryptionError, decrypt_text, encrypt_text
from backend.db import UnitOfWork
from backend.errors import AuthenticationFailed, ValidationFailed
from backend.identity import mfa
from backend.identity.models import Membership, PracticeSSO, User
from backend.service import require_role, service_function
from backend.settings import get_settings
from backend.tenancy.context import ROLE_PRIORITY, Actor, Role
from backend.tenancy.models import Tenant
from backend.types import ApiText, utcnow

with warnings.catch_warnings():
    # Authlib prefers the httpx2 package and warns when it falls back to httpx (the one this project pins).
    warnings.simplefilter("ignore", authlib.deprecate.AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import OAuth2Client, OAuthError

SCOPE = "openid email profile"
STAFF_ROLES = (Role.ADMIN, Role.DOCTOR)
# Signature algorithms accepted on ID tokens: asymmetric only (never "none", never HMAC with the client secret).
ID_TOKEN_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
# RFC 8176 authentication method references that mean more than one factor was used.
MULTI_FACTOR_AMR = frozenset({"mfa", "mca", "otp", "hwk", "sc"})
CLOCK_LEEWAY_SECONDS = 60
# A JWKS is fetched again for an unknown key id (the provider rotated its keys), at most this often.
JWKS_REFRESH_MIN_SECONDS = 30
STATE_COOKIE_NAME = "clinic_sso"

# What the sign-in page says for each refusal (/login?error=<key>). None of them names an account.
MESSAGES: dict[str, str] = {
    "sso_unavailable": "Single sign-on is not set up for this practice. Sign in with your email and password.",
    "sso_expired": "That sign-in took too long or was started in another browser. Please try again.",
    "sso_denied": "Your organisation's sign-in was cancelled or refused.",
    "sso_provider": (
        "We could not complete the sign-in with your organisation's sign-in service. Please try again, or sign in "
        "with your email and password."
    ),
    "sso_invalid": "Your organisation's sign-in could not be verified. Please try again.",
    "sso_unverified": "Your organisation has not confirmed your email address, so it cannot be used to sign in here.",
    "sso_no_account": (
        "No staff account at this practice uses the email address your organisation gave us. Ask your practice's "
        "administrator to add you."
    ),
    "sso_not_staff": ("Single sign-on is for practice staff. Patients sign in with their email and password."),
}


class SsoRefused(AuthenticationFailed):
    """A single sign-on that must not go on; `reason` is the sign-in page's message key (MESSAGES)."""

    code = "sso_refused"

    def __init__(self, reason: str) -> None:
        super().__init__(MESSAGES[reason])
        self.reason = reason


# -- configuration (admin) -------------------------------------------------------------------------------


class SsoConfigIn(BaseModel):
    """A practice's identity provider, as the admin sets it. Leave client_secret out to keep the stored one."""

    issuer: ApiText = Field(min_length=8, max_length=500, description="The provider's issuer URL (https)")
    client_id: ApiText = Field(min_length=1, max_length=255)
    client_secret: ApiText | None = Field(default=None, min_length=1, max_length=2000, description="Write only")
    enabled: bool = False
    trust_idp_mfa: bool = Field(
        default=False, description="The provider enforces MFA: its sign-ins skip our own second step"
    )


class SsoConfigOut(BaseModel):
    """What anyone may read back: never the client secret, only whether one is stored."""

    issuer: str
    client_id: str
    has_client_secret: bool
    enabled: bool
    trust_idp_mfa: bool
    redirect_uri: str


def redirect_uri(slug: str) -> str:
    """The callback URL the practice registers at its provider."""
    settings = get_settings()
    base = settings.sso_redirect_base_url or settings.public_url
    return f"{base.rstrip('/')}/auth/sso/{slug}/callback"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url_problem(url: str) -> str | None:
    """Why `url` may not name a provider endpoint, or None. HTTPS only (plain HTTP to this machine only when
    SSO_ALLOW_HTTP_LOOPBACK is on, for a local test provider)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return "must be a URL"
    if not host or parts.username or parts.password or parts.fragment:
        return "must be a URL with a host, no credentials and no fragment"
    if parts.scheme == "https":
        return None
    if parts.scheme == "http" and _is_loopback(host) and get_settings().sso_allow_http_loopback:
        return None
    return "must use https://"


def _view(config: PracticeSSO, slug: str) -> SsoConfigOut:
    return SsoConfigOut(
        issuer=config.issuer,
        client_id=config.client_id,
        has_client_secret=bool(config.client_secret_encrypted),
        enabled=config.enabled,
        trust_idp_mfa=config.trust_idp_mfa,
        redirect_uri=redirect_uri(slug),
    )


def _slug_of(uow: UnitOfWork, actor: Actor) -> str:
    tenant = uow.session.get(Tenant, actor.tenant_id)
    return tenant.slug if tenant else ""


@service_function
def get_sso_config(actor: Actor, uow: UnitOfWork) -> SsoConfigOut | None:
    """Read the practice's single sign-on settings (admin); the secret is never returned."""
    require_role(actor, Role.ADMIN)
    config = uow.session.exec(select(PracticeSSO)).first()
    return _view(config, _slug_of(uow, actor)) if config else None


@service_function
def put_sso_config(actor: Actor, uow: UnitOfWork, data: SsoConfigIn) -> SsoConfigOut:
    """Create or replace the practice's single sign-on settings (admin); audited without the secret."""
    require_role(actor, Role.ADMIN)
    issuer = data.issuer.strip()
    problem = _url_problem(issuer)
    if problem:
        raise ValidationFailed(f"The issuer {problem}.", field="issuer")
    client_id = data.client_id.strip()
    if not client_id:
        raise ValidationFailed("Enter the client ID.", field="client_id")
    secret = data.client_secret.strip() if data.client_secret is not None else None
    if data.client_secret is not None and not secret:
        raise ValidationFailed("The client secret cannot be blank.", field="client_secret")
    config = uow.session.exec(select(PracticeSSO)).first()
    if config is None:
        if secret is None:
            raise ValidationFailed("Enter the client secret.", field="client_secret")
        config = PracticeSSO(tenant_id=actor.tenant_id, issuer=issuer, client_id=client_id)
    config.issuer = issuer
    config.client_id = client_id
    if secret is not None:
        config.client_secret_encrypted = encrypt_text(secret)
    config.enabled = data.enabled
    config.trust_idp_mfa = data.trust_idp_mfa
    config.updated_at = utcnow()
    uow.session.add(config)
    uow.session.flush()
    record(
        actor,
        uow,
        action="sso.configured",
        entity_type="practice_sso",
        entity_id=config.id,
        data={
            "issuer": issuer,
            "client_id": client_id,
            "enabled": config.enabled,
            "trust_idp_mfa": config.trust_idp_mfa,
            "secret_changed": secret is not None,
        },
    )
    return _view(config, _slug_of(uow, actor))


# -- provider metadata: discovery and signing keys, fetched with a timeout and cached --------------------


_cache_lock = threading.Lock()
_metadata_cache: dict[str, tuple[float, dict[str, Any]]] = {}
_jwks_cache: dict[str, tuple[float, KeySet]] = {}


def clear_caches() -> None:
    """Forget every provider's metadata and keys (tests; a provider that changed its endpoints)."""
    with _cache_lock:
        _metadata_cache.clear()
        _jwks_cache.clear()


def _get_json(url: str) -> dict[str, Any]:
    settings = get_settings()
    try:
        response = httpx.get(url, timeout=settings.sso_http_timeout_seconds, follow_redirects=False)
        response.raise_for_status()
        document = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise SsoRefused("sso_provider") from exc
    if not isinstance(document, dict):
        raise SsoRefused("sso_provider")
    return document


def provider_metadata(issuer: str) -> dict[str, Any]:
    """The provider's discovery document (cached); its issuer must be the configured one, its endpoints https."""
    ttl = get_settings().sso_metadata_cache_seconds
    with _cache_lock:
        cached = _metadata_cache.get(issuer)
    if cached and time.monotonic() - cached[0] < ttl:
        return cached[1]
    document = _get_json(issuer.rstrip("/") + "/.well-known/openid-configuration")
    if document.get("issuer") != issuer:
        raise SsoRefused("sso_provider")
    for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        value = document.get(key)
        if not isinstance(value, str) or _url_problem(value):
            raise SsoRefused("sso_provider")
    userinfo = document.get("userinfo_endpoint")
    if userinfo is not None and (not isinstance(userinfo, str) or _url_problem(userinfo)):
        document.pop("userinfo_endpoint")
    with _cache_lock:
        _metadata_cache[issuer] = (time.monotonic(), document)
    return document


def _key_set(jwks_uri: str, *, refresh: bool = False) -> KeySet:
    ttl = get_settings().sso_metadata_cache_seconds
    with _cache_lock:
        cached = _jwks_cache.get(jwks_uri)
    if cached:
        age = time.monotonic() - cached[0]
        # A refresh (unknown key id) still reuses a set fetched moments ago: a flood of bad tokens is not a flood
        # of requests to the provider.
        if age < (JWKS_REFRESH_MIN_SECONDS if refresh else ttl):
            return cached[1]
    document = _get_json(jwks_uri)
    try:
        keys = KeySet.import_key_set(document)  # type: ignore[arg-type]
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise SsoRefused("sso_provider") from exc
    with _cache_lock:
        _jwks_cache[jwks_uri] = (time.monotonic(), keys)
    return keys


# -- the sign-in flow ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Practice:
    tenant_id: uuid.UUID
    slug: str
    config: PracticeSSO


def _practice_with_sso(slug: str) -> _Practice:
    """The practice of `slug` with its enabled provider; one refusal for an unknown practice and one without."""
    slug = slug.strip().lower()
    if not slug or len(slug) > 60:
        raise SsoRefused("sso_unavailable")
    with UnitOfWork(system=True) as uow:
        tenant = uow.session.exec(select(Tenant).where(Tenant.slug == slug)).first()
    if tenant is None:
        raise SsoRefused("sso_unavailable")
    with UnitOfWork(Actor.system(tenant.id)) as uow:
        config = uow.session.exec(select(PracticeSSO)).first()
    if config is None or not config.enabled or not config.client_secret_encrypted:
        raise SsoRefused("sso_unavailable")
    return _Practice(tenant_id=tenant.id, slug=tenant.slug, config=config)


def _client(practice: _Practice, *, with_secret: bool) -> OAuth2Client:
    secret: str | None = None
    if with_secret:
        try:
            secret = decrypt_text(practice.config.client_secret_encrypted)
        except DecryptionError as exc:
            raise SsoRefused("sso_unavailable") from exc
    return OAuth2Client(
        client_id=practice.config.client_id,
        client_secret=secret,
        scope=SCOPE,
        redirect_uri=redirect_uri(practice.slug),
        code_challenge_method="S256",
        timeout=get_settings().sso_http_timeout_seconds,
        follow_redirects=False,
    )


@dataclass(frozen=True)
class SignInStart:
    authorization_url: str
    state_cookie: str
    max_age: int


def state_cookie_name() -> str:
    settings = get_settings()
    return f"__Host-{STATE_COOKIE_NAME}" if settings.secure_cookies else STATE_COOKIE_NAME


def begin_sign_in(slug: str, *, next_path: str | None = None) -> SignInStart:
    """Start a sign-in at the practice's provider: its authorization URL and the state cookie to set."""
    practice = _practice_with_sso(slug)
    metadata = provider_metadata(practice.config.issuer)
    state, nonce, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48)
    lifetime = get_settings().sso_state_minutes * 60
    with _client(practice, with_secret=False) as client:
        url, _ = client.create_authorization_url(
            metadata["authorization_endpoint"], state=state, code_verifier=verifier, nonce=nonce
        )
    # Encrypted and authenticated (Fernet): the browser can neither read the verifier nor forge the state.
    cookie = encrypt_text(
        json.dumps(
            {
                "slug": practice.slug,
                "state": state,
                "nonce": nonce,
                "verifier": verifier,
                "next": next_path or "",
                "exp": int(time.time()) + lifetime,
            }
        )
    )
    return SignInStart(authorization_url=url, state_cookie=cookie, max_age=lifetime)


@dataclass(frozen=True)
class SignInResult:
    actor: Actor
    # The provider's sign-in stands in for our own second factor (see the module's docstring).
    mfa_satisfied: bool
    # Set when our own code is still needed: the browser continues at the code step with this token.
    pending_mfa_token: str | None
    next_path: str


def _read_state_cookie(cookie: str | None, slug: str, state: str | None) -> dict[str, Any]:
    if not cookie or not state or len(cookie) > 4000:
        raise SsoRefused("sso_expired")
    try:
        saved = json.loads(decrypt_text(cookie))
    except (DecryptionError, ValueError) as exc:
        raise SsoRefused("sso_expired") from exc
    if (
        not isinstance(saved, dict)
        or not isinstance(saved.get("exp"), int)
        or saved["exp"] < time.time()
        or saved.get("slug") != slug.strip().lower()
        or not hmac.compare_digest(str(saved.get("state", "")).encode(), state.encode("utf-8", "replace"))
    ):
        raise SsoRefused("sso_expired")
    return saved


def _verify_id_token(practice: _Practice, metadata: dict[str, Any], id_token: str, nonce: str) -> dict[str, Any]:
    """Signature (provider's JWKS, asymmetric algorithms only), iss, aud (and azp), exp, iat and nonce."""
    supported = metadata.get("id_token_signing_alg_values_supported") or ["RS256"]
    algorithms = [alg for alg in ID_TOKEN_ALGORITHMS if alg in supported] or ["RS256"]
    jwks_uri = metadata["jwks_uri"]
    try:
        try:
            decoded = jwt.decode(id_token, _key_set(jwks_uri), algorithms=algorithms)
        except JoseError:
            # Perhaps signed with a key the provider added since we fetched its set: fetch it once more.
            decoded = jwt.decode(id_token, _key_set(jwks_uri, refresh=True), algorithms=algorithms)
        claims = dict(decoded.claims)
        jwt.JWTClaimsRegistry(
            leeway=CLOCK_LEEWAY_SECONDS,
            iss={"essential": True, "value": practice.config.issuer},
            aud={"essential": True, "value": practice.config.client_id},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
            nonce={"essential": True},
        ).validate(claims)
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise SsoRefused("sso_invalid") from exc
    audience = claims["aud"]
    if isinstance(audience, list) and len(audience) > 1 and claims.get("azp") != practice.config.client_id:
        raise SsoRefused("sso_invalid")
    if not isinstance(claims["nonce"], str) or not hmac.compare_digest(claims["nonce"].encode(), nonce.encode()):
        raise SsoRefused("sso_invalid")
    return claims


def _identity_claims(client: OAuth2Client, metadata: dict[str, Any], claims: dict[str, Any]) -> tuple[str, bool]:
    """The e-mail and whether the provider verified it: from the ID token, else from the userinfo endpoint."""
    email, verified = claims.get("email"), claims.get("email_verified")
    if (not isinstance(email, str) or verified is None) and metadata.get("userinfo_endpoint"):
        try:
            response = client.get(metadata["userinfo_endpoint"])
            response.raise_for_status()
            info = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise SsoRefused("sso_provider") from exc
        # The userinfo must be about the same person (OpenID Connect Core 5.3.2).
        if isinstance(info, dict) and info.get("sub") == claims["sub"]:
            email, verified = info.get("email", email), info.get("email_verified", verified)
    if verified == "true":  # some providers send the boolean as a string
        verified = True
    if not isinstance(email, str) or "@" not in email or len(email) > 320:
        raise SsoRefused("sso_unverified")
    return email.strip().lower(), verified is True


def _multi_factor(config: PracticeSSO, claims: dict[str, Any]) -> bool:
    if not config.trust_idp_mfa:
        return False
    amr = claims.get("amr")
    if amr is None:
        # Google Workspace sends no `amr`: trusting the provider is then the practice's word alone.
        return True
    return isinstance(amr, list) and any(isinstance(m, str) and m.lower() in MULTI_FACTOR_AMR for m in amr)


def _record_refusal(
    uow: UnitOfWork, tenant_id: uuid.UUID, config: PracticeSSO, reason: str, user: User | None = None
) -> None:
    # No e-mail in the trail: the entity id names the account when there is one.
    record(
        Actor(tenant_id=tenant_id, role=Role.SYSTEM, user_id=user.id if user else None),
        uow,
        action="user.sso_refused",
        entity_type="user" if user else "practice_sso",
        entity_id=user.id if user else config.id,
        data={"reason": reason},
    )


def _refuse(practice: _Practice, reason: str, *, detail: str | None = None) -> SsoRefused:
    """Audit a refused sign-in; return the error to raise."""
    with UnitOfWork(Actor.system(practice.tenant_id)) as uow:
        _record_refusal(uow, practice.tenant_id, practice.config, detail or reason)
        uow.commit()
    return SsoRefused(reason)


def _staff_sign_in(practice: _Practice, email: str, claims: dict[str, Any]) -> tuple[Actor, bool, str | None]:
    """The staff member of this practice with `email` (never another practice's account); audit the sign-in.

    Returns the actor, whether the provider's MFA stands in for ours, and a pending-MFA token when our own code
    is still needed (the account has TOTP and the provider's sign-in does not count as multi-factor).
    """
    with UnitOfWork(Actor.system(practice.tenant_id)) as uow:
        user = uow.session.exec(
            select(User).where(func.lower(User.email) == email, col(User.is_active).is_(True))
        ).first()
        memberships = (
            [
                m
                for m in uow.session.exec(select(Membership).where(Membership.user_id == user.id))
                if Role(m.role) in STAFF_ROLES
            ]
            if user
            else []
        )
        if user is None or not memberships:
            reason = "sso_not_staff" if user else "sso_no_account"
            _record_refusal(uow, practice.tenant_id, practice.config, reason, user)
            uow.commit()
            raise SsoRefused(reason)
        membership = min(memberships, key=lambda m: ROLE_PRIORITY.get(Role(m.role), 99))
        actor = Actor(
            tenant_id=membership.tenant_id,
            role=Role(membership.role),
            user_id=membership.user_id,
            patient_id=membership.patient_id,
            provider_id=membership.provider_id,
        )
        by_provider = _multi_factor(practice.config, claims)
        data: dict[str, Any] = {"role": str(actor.role), "method": "sso", "issuer": practice.config.issuer}
        data["mfa_by_provider"] = by_provider
        pending: str | None = None
        if not by_provider and mfa.is_enrolled(user):
            # Like a right password: the sign-in is complete only with our own code (POST /auth/login/mfa),
            # which writes the user.login event.
            pending = mfa.issue_pending_token(user, actor.role)
            record(actor, uow, action="user.sso_verified", entity_type="user", entity_id=user.id, data=data)
        else:
            if by_provider:
                data["mfa"] = "provider"
            user.last_login_at = utcnow()
            uow.session.add(user)
            record(actor, uow, action="user.login", entity_type="user", entity_id=user.id, data=data)
        uow.commit()
        return actor, by_provider, pending


def complete_sign_in(
    slug: str,
    *,
    state_cookie: str | None,
    state: str | None,
    code: str | None,
    error: str | None = None,
) -> SignInResult:
    """Finish a sign-in the provider sent back: check state, exchange the code, verify the ID token, find the
    staff account of this practice with the verified e-mail. Raise SsoRefused (with the page's message key)."""
    saved = _read_state_cookie(state_cookie, slug, state)
    practice = _practice_with_sso(slug)
    if error:
        raise _refuse(practice, "sso_denied", detail=f"provider:{error[:40]}")
    if not code or len(code) > 2000:
        raise SsoRefused("sso_expired")
    metadata = provider_metadata(practice.config.issuer)
    methods = metadata.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    auth_method = "client_secret_basic" if "client_secret_basic" in methods else "client_secret_post"
    with _client(practice, with_secret=True) as client:
        client.token_endpoint_auth_method = auth_method
        try:
            token = client.fetch_token(
                metadata["token_endpoint"],
                grant_type="authorization_code",
                code=code,
                code_verifier=saved["verifier"],
                redirect_uri=redirect_uri(practice.slug),
            )
        except OAuthError as exc:
            raise _refuse(practice, "sso_invalid", detail=f"token:{str(exc.error)[:40]}") from exc
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise _refuse(practice, "sso_provider", detail="token_endpoint") from exc
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise _refuse(practice, "sso_invalid", detail="no_id_token")
        try:
            claims = _verify_id_token(practice, metadata, id_token, saved["nonce"])
        except SsoRefused as exc:
            raise _refuse(practice, exc.reason, detail="id_token") from exc
        email, verified = _identity_claims(client, metadata, claims)
    if not verified:
        raise _refuse(practice, "sso_unverified")
    actor, by_provider, pending = _staff_sign_in(practice, email, claims)
    return SignInResult(
        actor=actor, mfa_satisfied=by_provider, pending_mfa_token=pending, next_path=str(saved.get("next") or "")
    )
