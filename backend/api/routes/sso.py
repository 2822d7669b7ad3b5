"""Single sign-on for staff: the browser's round trip to the practice's OpenID Connect provider, and the admin's
settings for it (backend/identity/sso.py does the work)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse

from backend.api.deps import ActorDep, UowDep
from backend.api.routes import auth
from backend.api.routes.auth import HOME_BY_ROLE, _safe_next
from backend.errors import NotFound
from backend.identity import service as identity
from backend.identity import sso
from backend.settings import get_settings

router = APIRouter(tags=["sso"])


def _to_login(reason: str, slug: str | None = None) -> RedirectResponse:
    target = f"/login?error={reason}"
    if slug:
        target += f"&practice={quote(slug[:60], safe='')}"
    response = RedirectResponse(target, status_code=303)
    _clear_state_cookie(response)
    return response


def _clear_state_cookie(response: RedirectResponse) -> None:
    settings = get_settings()
    response.delete_cookie(
        sso.state_cookie_name(), path="/", secure=settings.secure_cookies, httponly=True, samesite="lax"
    )


@router.get("/auth/sso/start", include_in_schema=False)
def sso_start_for_practice(
    practice: Annotated[str, Query(max_length=60)] = "",
    next: Annotated[str | None, Query(max_length=500)] = None,
) -> RedirectResponse:
    """The sign-in page's "Sign in with your organisation" form: go to the practice's own start URL."""
    slug = practice.strip().lower()
    if not slug or not slug.replace("-", "").replace("_", "").isalnum():
        return _to_login("sso_unavailable")
    target = f"/auth/sso/{quote(slug, safe='')}/start"
    if _safe_next(next):
        target += f"?next={quote(next or '', safe='/')}"
    return RedirectResponse(target, status_code=303)


@router.get("/auth/sso/{slug}/start", include_in_schema=False)
def sso_start(slug: str, next: Annotated[str | None, Query(max_length=500)] = None) -> RedirectResponse:
    """Send the browser to the practice's provider, with state, nonce and PKCE kept in a short-lived cookie."""
    try:
        start = sso.begin_sign_in(slug[:61], next_path=_safe_next(next))
    except sso.SsoRefused as exc:
        return _to_login(exc.reason, slug)
    settings = get_settings()
    response = RedirectResponse(start.authorization_url, status_code=303)
    response.set_cookie(
        sso.state_cookie_name(),
        start.state_cookie,
        max_age=start.max_age,
        httponly=True,
        secure=settings.secure_cookies,
        # Lax: the provider's redirect back is a top-level GET navigation, which carries it.
        samesite="lax",
        path="/",
    )
    return response


@router.get("/auth/sso/{slug}/callback", include_in_schema=False)
def sso_callback(
    request: Request,
    slug: str,
    code: Annotated[str | None, Query(max_length=2000)] = None,
    state: Annotated[str | None, Query(max_length=200)] = None,
    error: Annotated[str | None, Query(max_length=200)] = None,
) -> RedirectResponse:
    """Where the provider sends the browser back: verify everything, then sign the staff member in."""
    try:
        result = sso.complete_sign_in(
            slug[:61],
            state_cookie=request.cookies.get(sso.state_cookie_name()),
            state=state,
            code=code,
            error=error,
        )
    except sso.SsoRefused as exc:
        return _to_login(exc.reason, slug)
    if result.pending_mfa_token is not None:
        # The account has our TOTP and the provider's sign-in does not stand in for it: the code step, exactly as
        # after a right password.
        response = auth._ask_for_code(result.pending_mfa_token, result.next_path)
    elif result.mfa_satisfied:
        # The practice trusts its provider's MFA: a full session, without our own code or enrolment.
        token, max_age = identity.start_session(result.actor)
        target = _safe_next(result.next_path) or HOME_BY_ROLE.get(result.actor.role, "/")
        response = RedirectResponse(target, status_code=303)
        auth._set_cookie(response, get_settings().session_cookie, token, max_age)
    else:
        # As after a right password without MFA: a session, or the enrolment-only one where MFA is required.
        response = auth.signed_in_response(result.actor, result.next_path)
    _clear_state_cookie(response)
    return response


@router.get("/api/v1/sso-config", response_model=sso.SsoConfigOut)
def get_sso_config(actor: ActorDep, uow: UowDep) -> sso.SsoConfigOut:
    """The practice's single sign-on settings (admin). The client secret is never returned; 404 until set."""
    config = sso.get_sso_config(actor, uow)
    if config is None:
        raise NotFound("single sign-on configuration")
    return config


@router.put("/api/v1/sso-config", response_model=sso.SsoConfigOut)
def put_sso_config(body: sso.SsoConfigIn, actor: ActorDep, uow: UowDep) -> sso.SsoConfigOut:
    """Set the practice's OpenID Connect provider for staff sign-in (admin). Omit client_secret to keep it."""
    config = sso.put_sso_config(actor, uow, body)
    uow.commit()
    return config
