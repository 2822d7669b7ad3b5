"""Tokens for API clients (issue, refresh, sign out), password changes, disabling a user, and the cookie
login/logout the browser pages post to."""

from __future__ import annotations

import uuid
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, Field

from backend.api.deps import ActorDep, ClientAddressDep, SessionDep, UowDep, client_address
from backend.errors import AuthenticationFailed, PracticeRequired, RateLimited
from backend.identity import service as identity
from backend.settings import get_settings
from backend.tenancy.context import Role
from backend.types import ApiText

router = APIRouter(tags=["auth"])


class TokenRequest(BaseModel):
    email: ApiText = Field(min_length=3, max_length=320)
    password: ApiText = Field(min_length=1, max_length=1024)
    totp: ApiText | None = Field(default=None, max_length=12, description="Reserved for two-factor login")
    practice: ApiText | None = Field(
        default=None, max_length=60, description="Practice slug, if the email is in several"
    )
    role: Role | None = Field(default=None, description="Which of the user's roles to act in")


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int
    refresh_token: str = Field(description="Opaque, single use: POST it to /api/v1/auth/refresh for new tokens")


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
        access_token=grant.access_token, expires_in=grant.expires_in, refresh_token=grant.refresh_token
    )


@router.post("/api/v1/auth/token", response_model=TokenResponse)
def create_token(body: TokenRequest, address: ClientAddressDep) -> TokenResponse:
    """Exchange email and password for a bearer token and a refresh token (401 when wrong, 429 when throttled)."""
    if body.role == Role.SYSTEM:
        raise AuthenticationFailed("invalid role")
    actor = identity.authenticate(
        email=body.email, password=body.password, client_address=address, practice=body.practice, role=body.role
    )
    grant = identity.start_api_session(actor)
    return _token_response(grant)


@router.post("/api/v1/auth/refresh", response_model=TokenResponse)
def refresh_token(body: RefreshRequest) -> TokenResponse:
    """Trade a refresh token for new tokens; the one presented is used up (presenting it again ends the session)."""
    grant = identity.refresh_api_session(body.refresh_token)
    return _token_response(grant)


@router.post("/api/v1/auth/logout", status_code=204)
def api_logout(session: SessionDep) -> Response:
    """End the bearer token's session: its access token and refresh token stop working."""
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


@router.post("/api/v1/users/{user_id}/disable", response_model=UserStatus)
def disable_user(user_id: uuid.UUID, actor: ActorDep, uow: UowDep) -> UserStatus:
    """Disable a user of your practice (admin): they cannot sign in, and every session of theirs ends."""
    user = identity.disable_user(actor, uow, user_id)
    uow.commit()
    return UserStatus(id=user.id, is_active=user.is_active)


@router.get("/api/v1/me", response_model=MeResponse)
def me(actor: ActorDep, uow: UowDep) -> MeResponse:
    """Who the token belongs to."""
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
    except AuthenticationFailed:
        return RedirectResponse("/login?error=invalid", status_code=303)
    token, max_age = identity.start_session(actor)
    settings = get_settings()
    target = _safe_next(next) or HOME_BY_ROLE.get(actor.role, "/")
    response = RedirectResponse(target, status_code=303)
    # HttpOnly, SameSite=Lax; Secure (and so __Host-, which also pins path=/ and forbids Domain) over HTTPS.
    response.set_cookie(
        settings.session_cookie,
        token,
        max_age=max_age,
        httponly=True,
        secure=settings.secure_cookies,
        samesite="lax",
        path="/",
    )
    return response


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
