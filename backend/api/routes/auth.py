"""Tokens for API clients (issue, refresh, sign out), password changes, disabling a user, and the cookie
login/logout the browser pages post to."""

from __future__ import annotations

import uuid
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, Field

from backend.api.deps import (
    ActorDep,
    ClientAddressDep,
    EnrolmentActorDep,
    EnrolmentSessionDep,
    EnrolmentUowDep,
    UowDep,
    client_address,
)
from backend.errors import AuthenticationFailed, PracticeRequired, RateLimited
from backend.identity import mfa
from backend.identity import service as identity
from backend.settings import get_settings
from backend.tenancy.context import Actor, Role
from backend.types import ApiText

router = APIRouter(tags=["auth"])


class TokenRequest(BaseModel):
    email: ApiText = Field(min_length=3, max_length=320)
    password: ApiText = Field(min_length=1, max_length=1024)
    totp: ApiText | None = Field(
        default=None,
        max_length=24,
        description="For accounts with MFA: the 6-digit code from the authenticator app, or an unused recovery code",
    )
    practice: ApiText | None = Field(
        default=None, max_length=60, description="Practice slug, if the email is in several"
    )
    role: Role | None = Field(default=None, description="Which of the user's roles to act in")


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int
    refresh_token: str = Field(description="Opaque, single use: POST it to /api/v1/auth/refresh for new tokens")
    mfa_enrolment_required: bool = Field(
        default=False,
        description="True: your account must use MFA and has not set it up. Until you do (POST /api/v1/me/mfa/enrol, "
        "then /api/v1/me/mfa/confirm) this token reaches only those routes, GET /api/v1/me, GET /api/v1/me/mfa and "
        "POST /api/v1/auth/logout; every other route answers 403 `mfa_enrolment_required`",
    )


class RefreshRequest(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=200)


class PasswordChange(BaseModel):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=1, max_length=1024)


class UserStatus(BaseModel):
    id: uuid.UUID
    is_active: bool


class MeResponse(BaseModel):
    user_id: str
    full_name: str
    email: str
    role: str
    practice: str
    patient_id: str | None
    provider_id: str | None


def _token_response(grant: identity.TokenGrant) -> TokenResponse:
    return TokenResponse(
        access_token=grant.access_token,
        expires_in=grant.expires_in,
        refresh_token=grant.refresh_token,
        mfa_enrolment_required=grant.mfa_enrolment_only,
    )


@router.post("/api/v1/auth/token", response_model=TokenResponse)
def create_token(body: TokenRequest, address: ClientAddressDep) -> TokenResponse:
    """Exchange email and password for a bearer token and a refresh token (401 when wrong, 429 when throttled).

    An account with MFA also sends `totp` (401 `mfa_required` without it). An account that must use MFA (admins;
    clinicians where the practice says so) and has not set it up gets a token limited to setting it up
    (`mfa_enrolment_required: true`): it reaches GET /me, GET /me/mfa, POST /me/mfa/enrol, POST /me/mfa/confirm
    and POST /auth/logout, and every other route answers 403 `mfa_enrolment_required`. Confirming enrolment lifts
    the limit on that same token (and its refresh token): the confirming code proves the second factor, as in the
    browser; every later sign-in needs a code.
    """
    if body.role == Role.SYSTEM:
        raise AuthenticationFailed("invalid role")
    actor = identity.authenticate(
        email=body.email,
        password=body.password,
        client_address=address,
        practice=body.practice,
        role=body.role,
        totp=body.totp,
    )
    grant = identity.start_api_session(actor)
    return _token_response(grant)


@router.post("/api/v1/auth/refresh", response_model=TokenResponse)
def refresh_token(body: RefreshRequest) -> TokenResponse:
    """Trade a refresh token for new tokens; the one presented is used up (presenting it again ends the session)."""
    grant = identity.refresh_api_session(body.refresh_token)
    return _token_response(grant)


@router.post("/api/v1/auth/logout", status_code=204)
def api_logout(session: EnrolmentSessionDep) -> Response:
    """End the bearer token's session: its access token and refresh token stop working (also a token limited to
    MFA enrolment)."""
    identity.end_api_session(session.actor, session.session_id)
    return Response(status_code=204)


@router.post("/api/v1/me/password", status_code=204)
def change_password(body: PasswordChange, actor: ActorDep, uow: UowDep, address: ClientAddressDep) -> Response:
    """Change your own password (needs the current one). Every session of yours ends: sign in again."""
    identity.change_password(
        actor, uow, current_password=body.current_password, new_password=body.new_password, client_address=address
    )
    uow.commit()
    return Response(status_code=204)


class MfaStatusResponse(BaseModel):
    enrolled: bool
    required: bool = Field(description="Whether your role requires MFA (admins always; clinicians if so decided)")
    enabled_at: str = Field(description="When MFA was set up (ISO 8601), empty if not")
    recovery_codes_left: int


class MfaEnrolmentResponse(BaseModel):
    secret: str = Field(description="Base32 secret for manual entry; shown only while enrolment is unconfirmed")
    otpauth_uri: str
    qr_svg_data_uri: str


class MfaCode(BaseModel):
    code: ApiText = Field(min_length=1, max_length=24)


class RecoveryCodesResponse(BaseModel):
    recovery_codes: list[str] = Field(description="Shown once: only their hashes are kept")


class MfaPolicy(BaseModel):
    clinicians_required: bool


@router.get("/api/v1/me/mfa", response_model=MfaStatusResponse)
def mfa_status(actor: EnrolmentActorDep, uow: EnrolmentUowDep) -> MfaStatusResponse:
    """Your MFA status (never the secret). Also with a token limited to MFA enrolment."""
    status = mfa.get_mfa_status(actor, uow)
    return MfaStatusResponse(
        enrolled=status.enrolled,
        required=status.required,
        enabled_at=status.enabled_at,
        recovery_codes_left=status.recovery_codes_left,
    )


@router.post("/api/v1/me/mfa/enrol", response_model=MfaEnrolmentResponse)
def mfa_enrol(actor: EnrolmentActorDep, uow: EnrolmentUowDep) -> MfaEnrolmentResponse:
    """Start setting up MFA: a new secret for your authenticator app (confirm it with POST /me/mfa/confirm).
    Also with a token limited to MFA enrolment."""
    enrolment = mfa.begin_enrolment(actor, uow)
    uow.commit()
    return MfaEnrolmentResponse(
        secret=enrolment.secret, otpauth_uri=enrolment.uri, qr_svg_data_uri=enrolment.qr_data_uri
    )


@router.post("/api/v1/me/mfa/confirm", response_model=RecoveryCodesResponse)
def mfa_confirm(body: MfaCode, actor: EnrolmentActorDep, uow: EnrolmentUowDep) -> RecoveryCodesResponse:
    """Confirm MFA with a first code from the app; returns ten one-time recovery codes, shown this once.

    A token limited to MFA enrolment (and its refresh token) works fully from now on: the code just confirmed is
    the second factor of that sign-in, as in the browser.
    """
    codes = mfa.confirm_enrolment(actor, uow, code=body.code)
    uow.commit()
    return RecoveryCodesResponse(recovery_codes=codes)


@router.post("/api/v1/me/mfa/recovery-codes", response_model=RecoveryCodesResponse)
def mfa_recovery_codes(body: MfaCode, actor: ActorDep, uow: UowDep) -> RecoveryCodesResponse:
    """Replace your recovery codes (needs a current code from the app); the old ones stop working."""
    codes = mfa.regenerate_recovery_codes(actor, uow, code=body.code)
    uow.commit()
    return RecoveryCodesResponse(recovery_codes=codes)


@router.post("/api/v1/users/{user_id}/mfa/reset", status_code=204)
def mfa_reset(user_id: uuid.UUID, actor: ActorDep, uow: UowDep) -> Response:
    """Remove a user's MFA (admin; a lost phone): they set it up again at their next sign-in; their sessions end."""
    mfa.reset_mfa(actor, uow, user_id)
    uow.commit()
    return Response(status_code=204)


@router.get("/api/v1/mfa-policy", response_model=MfaPolicy)
def read_mfa_policy(actor: ActorDep, uow: UowDep) -> MfaPolicy:
    """Whether clinicians of your practice must use MFA (admin). Admins always must."""
    return MfaPolicy(clinicians_required=mfa.get_mfa_policy(actor, uow))


@router.put("/api/v1/mfa-policy", response_model=MfaPolicy)
def write_mfa_policy(body: MfaPolicy, actor: ActorDep, uow: UowDep) -> MfaPolicy:
    """Require (or not) MFA of your practice's clinicians (admin)."""
    required = mfa.set_mfa_policy(actor, uow, clinicians_required=body.clinicians_required)
    uow.commit()
    return MfaPolicy(clinicians_required=required)


@router.post("/api/v1/users/{user_id}/disable", response_model=UserStatus)
def disable_user(user_id: uuid.UUID, actor: ActorDep, uow: UowDep) -> UserStatus:
    """Disable a user of your practice (admin): they cannot sign in, and every session of theirs ends."""
    user = identity.disable_user(actor, uow, user_id)
    uow.commit()
    return UserStatus(id=user.id, is_active=user.is_active)


@router.get("/api/v1/me", response_model=MeResponse)
def me(actor: EnrolmentActorDep, uow: EnrolmentUowDep) -> MeResponse:
    """Who the token belongs to (also a token limited to MFA enrolment)."""
    profile = identity.get_profile(actor, uow)
    return MeResponse(
        user_id=str(profile.user_id),
        full_name=profile.full_name,
        email=profile.email,
        role=str(profile.role),
        practice=profile.practice_name,
        patient_id=str(profile.patient_id) if profile.patient_id else None,
        provider_id=str(profile.provider_id) if profile.provider_id else None,
    )


HOME_BY_ROLE = {Role.PATIENT: "/patient", Role.DOCTOR: "/doctor", Role.ADMIN: "/admin"}


def _safe_next(value: str | None) -> str | None:
    # Only same-site paths: never redirect a login to another host.
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return None


@router.post("/auth/login", include_in_schema=False)
def browser_login(
    request: Request,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    next: Annotated[str | None, Form(max_length=500)] = None,
    practice: Annotated[str | None, Form(max_length=60)] = None,
) -> RedirectResponse:
    """Check the login form; on success set the HttpOnly session cookie and go to the role's home."""
    try:
        actor = identity.authenticate(
            email=email,
            password=password,
            client_address=client_address(request),
            practice=(practice or "").strip() or None,
        )
    except PracticeRequired:
        return RedirectResponse("/login?error=practice", status_code=303)
    except RateLimited as exc:
        query = urlencode({"error": "throttled", "retry": exc.retry_after})
        return RedirectResponse(f"/login?{query}", status_code=303)
    except mfa.MfaRequired as exc:
        return _ask_for_code(exc.pending_token, next)
    except AuthenticationFailed:
        return RedirectResponse("/login?error=invalid", status_code=303)
    return signed_in_response(actor, next)


def _set_cookie(response: Response, name: str, value: str, max_age: int) -> None:
    # HttpOnly, SameSite=Lax; Secure (and so __Host-, which also pins path=/ and forbids Domain) over HTTPS.
    response.set_cookie(
        name, value, max_age=max_age, httponly=True, secure=get_settings().secure_cookies, samesite="lax", path="/"
    )


def _ask_for_code(pending_token: str, next_path: str | None) -> RedirectResponse:
    """Password right, MFA on: hold the pending-MFA token in an HttpOnly cookie and ask for the code."""
    safe = _safe_next(next_path)
    response = RedirectResponse("/login/mfa" + (f"?{urlencode({'next': safe})}" if safe else ""), status_code=303)
    _set_cookie(response, mfa.pending_cookie_name(), pending_token, mfa.PENDING_SECONDS)
    return response


def signed_in_response(actor: Actor, next_path: str | None, *, clear_pending: bool = False) -> RedirectResponse:
    """The session cookie for a fully signed-in actor, and the way to their page.

    Someone whose role needs MFA and who has not set it up gets a session that reaches only the enrolment page.
    """
    settings = get_settings()
    if mfa.needs_enrolment(actor):
        token, max_age = identity.start_session(actor, enrolment_only=True)
        response = RedirectResponse("/account/mfa", status_code=303)
    else:
        token, max_age = identity.start_session(actor)
        response = RedirectResponse(_safe_next(next_path) or HOME_BY_ROLE.get(actor.role, "/"), status_code=303)
    _set_cookie(response, settings.session_cookie, token, max_age)
    if clear_pending:  # the code step is done: the pending-MFA token has served
        response.delete_cookie(
            mfa.pending_cookie_name(), path="/", secure=settings.secure_cookies, httponly=True, samesite="lax"
        )
    return response


@router.post("/auth/login/mfa", include_in_schema=False)
def browser_login_code(
    request: Request,
    code: Annotated[str, Form(max_length=64)] = "",
    next: Annotated[str | None, Form(max_length=500)] = None,
) -> RedirectResponse:
    """The second step of a browser sign-in with MFA: the pending-MFA cookie and a code -> the session cookie."""
    safe = _safe_next(next)
    again = {"next": safe} if safe else {}
    try:
        actor = identity.complete_mfa_login(
            pending_token=request.cookies.get(mfa.pending_cookie_name()),
            code=code,
            client_address=client_address(request),
        )
    except RateLimited as exc:
        return RedirectResponse(
            f"/login/mfa?{urlencode({'error': 'throttled', 'retry': exc.retry_after, **again})}", status_code=303
        )
    except mfa.MfaInvalid:
        return RedirectResponse(f"/login/mfa?{urlencode({'error': 'invalid', **again})}", status_code=303)
    except AuthenticationFailed:
        return RedirectResponse("/login?error=mfa_expired", status_code=303)
    return signed_in_response(actor, next, clear_pending=True)


@router.post("/auth/logout", include_in_schema=False)
def browser_logout(request: Request) -> RedirectResponse:
    """Revoke the session and clear its cookie."""
    settings = get_settings()
    identity.end_session(request.cookies.get(settings.session_cookie))
    response = RedirectResponse("/login?signed_out=1", status_code=303)
    # The tab's Reflex client token lives in sessionStorage: have the browser drop it (and any cache) too, so the
    # next person on this tab starts a new client even if the page's own script to forget it did not run.
    response.headers["Clear-Site-Data"] = '"cache", "storage"'
    # A __Host- cookie is only replaced by one with the same attributes (Secure, path=/).
    response.delete_cookie(
        settings.session_cookie, path="/", secure=settings.secure_cookies, httponly=True, samesite="lax"
    )
    return response
