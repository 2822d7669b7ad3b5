"""Tokens for API clients, and the cookie login/logout the browser pages post to."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, Field

from backend.api.deps import ActorDep, UowDep
from backend.errors import AuthenticationFailed, PracticeRequired, RateLimited
from backend.identity import service as identity
from backend.settings import get_settings
from backend.tenancy.context import Role

router = APIRouter(tags=["auth"])


class TokenRequest(BaseModel):
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)
    totp: str | None = Field(default=None, max_length=12, description="Reserved for two-factor login")
    practice: str | None = Field(default=None, max_length=60, description="Practice slug, if the email is in several")
    role: Role | None = Field(default=None, description="Which of the user's roles to act in")


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int


class MeResponse(BaseModel):
    user_id: str
    full_name: str
    email: str
    role: str
    practice: str
    patient_id: str | None
    provider_id: str | None


@router.post("/api/v1/auth/token", response_model=TokenResponse)
def create_token(body: TokenRequest) -> TokenResponse:
    """Exchange email and password for a bearer token (401 when wrong, 429 after repeated failures)."""
    if body.role == Role.SYSTEM:
        raise AuthenticationFailed("invalid role")
    actor = identity.authenticate(email=body.email, password=body.password, practice=body.practice, role=body.role)
    token, expires_in = identity.issue_token(actor)
    return TokenResponse(access_token=token, expires_in=expires_in)


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
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    next: Annotated[str | None, Form(max_length=500)] = None,
    practice: Annotated[str | None, Form(max_length=60)] = None,
) -> RedirectResponse:
    """Check the login form; on success set the HttpOnly session cookie and go to the role's home."""
    try:
        actor = identity.authenticate(email=email, password=password, practice=(practice or "").strip() or None)
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
    response.set_cookie(
        settings.session_cookie_name,
        token,
        max_age=max_age,
        httponly=True,
        secure=settings.cookie_secure,
        samesite="lax",
        path="/",
    )
    return response


@router.post("/auth/logout", include_in_schema=False)
def browser_logout(request: Request) -> RedirectResponse:
    """Revoke the session and clear its cookie."""
    settings = get_settings()
    identity.end_session(request.cookies.get(settings.session_cookie_name))
    response = RedirectResponse("/login?signed_out=1", status_code=303)
    response.delete_cookie(settings.session_cookie_name, path="/")
    return response
