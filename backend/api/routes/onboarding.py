"""Onboarding and recovery: invitations (admin), the people of the practice, accepting an invitation, forgotten
passwords, self-registration (the practice's setting, registering, verifying the e-mail); and the form posts of the
pages /invite/<token>, /forgot, /reset/<token> and /verify/<token>.

The anonymous routes are under /api/v1/auth/ and /auth/, so the auth rate limit applies to them per address
(backend/api/ratelimit.py) on top of the password-reset limits of backend/identity/onboarding.py.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, Field, StrictBool

from backend.api.deps import ActorDep, ClientAddressDep, UowDep, client_address
from backend.api.routes.auth import signed_in_response
from backend.errors import DomainError, RateLimited, ValidationFailed
from backend.identity import onboarding
from backend.tenancy.context import Role
from backend.types import ApiText

router = APIRouter(tags=["onboarding"])


class InvitationRequest(BaseModel):
    full_name: ApiText = Field(min_length=2, max_length=200)
    email: ApiText = Field(min_length=3, max_length=320, description="Their sign-in name; the link goes here")
    role: Role = Field(default=Role.PATIENT, description="patient, doctor or admin")
    phone: ApiText = Field(default="", max_length=40, description="Mobile with country code: the link by SMS too")
    clinic_id: uuid.UUID | None = Field(default=None, description="Patient: home clinic; doctor: where they work")
    title: ApiText = Field(default="", max_length=40, description="Doctor: e.g. MD, PsyD, LCSW")


class InvitationResponse(BaseModel):
    user_id: uuid.UUID
    role: str
    patient_id: uuid.UUID | None
    provider_id: uuid.UUID | None
    expires_at: datetime
    notification_ids: list[uuid.UUID] = Field(description="The outbox rows that carry the link")


class PersonResponse(BaseModel):
    user_id: uuid.UUID
    full_name: str
    email: str
    role: str
    status: str = Field(description="active, invited, invite expired or deactivated")
    invite_expires_at: datetime | None
    last_login_at: datetime | None


class PasswordResetRequest(BaseModel):
    email: ApiText = Field(min_length=3, max_length=320)
    practice: ApiText | None = Field(default=None, max_length=60, description="Practice slug, to reset one only")


class PasswordResetAnswer(BaseModel):
    detail: str


class PasswordResetConfirm(BaseModel):
    token: ApiText = Field(min_length=1, max_length=200)
    new_password: str = Field(min_length=1, max_length=1024)


class InvitationAccept(BaseModel):
    token: ApiText = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1024)
    accept_terms: bool = Field(description="Must be true: the person accepts the terms of use")


class SelfRegistrationBody(BaseModel):
    enabled: StrictBool = Field(description="Patients may create their own account (verified by e-mail)")


class SelfRegistrationResponse(BaseModel):
    enabled: bool
    register_path: str = Field(description="The practice's registration page, e.g. /register/harbor")


class RegistrationRequest(BaseModel):
    practice: ApiText = Field(min_length=1, max_length=60, description="The practice's short name, e.g. harbor")
    full_name: ApiText = Field(min_length=1, max_length=200)
    email: ApiText = Field(min_length=1, max_length=320, description="Sign-in name; the verification link goes here")
    phone: ApiText = Field(default="", max_length=40, description="Optional mobile with country code")
    password: str = Field(min_length=1, max_length=1024, description="The password policy of invitations applies")
    accept_terms: bool = Field(description="Must be true: the person accepts the practice's terms of use")
    locale: ApiText = Field(default="en", max_length=10, description="Language of the messages: en or es")


class RegistrationAnswer(BaseModel):
    detail: str


class RegistrationVerify(BaseModel):
    token: ApiText = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1024, description="The password chosen when registering")


def _invitation(result: onboarding.Invitation) -> InvitationResponse:
    return InvitationResponse(
        user_id=result.user_id,
        role=str(result.role),
        patient_id=result.patient_id,
        provider_id=result.provider_id,
        expires_at=result.expires_at,
        notification_ids=result.notification_ids,
    )


@router.post("/api/v1/invitations", response_model=InvitationResponse, status_code=201)
def invite(body: InvitationRequest, actor: ActorDep, uow: UowDep) -> InvitationResponse:
    """Invite a patient or a staff member (admin): their account waits, inactive, for them to set a password from
    the single-use link sent through the outbox (e-mail; SMS too with a mobile number)."""
    result = onboarding.invite_person(
        actor,
        uow,
        full_name=body.full_name,
        email=body.email,
        role=body.role,
        phone=body.phone,
        clinic_id=body.clinic_id,
        title=body.title,
    )
    uow.commit()
    return _invitation(result)


@router.post("/api/v1/users/{user_id}/invitation", response_model=InvitationResponse, status_code=201)
def resend_invitation(user_id: uuid.UUID, actor: ActorDep, uow: UowDep) -> InvitationResponse:
    """Send a new invitation link to someone who has not accepted yet (admin); the earlier link stops working."""
    result = onboarding.resend_invitation(actor, uow, user_id)
    uow.commit()
    return _invitation(result)


@router.get("/api/v1/users", response_model=list[PersonResponse])
def list_people(
    actor: ActorDep,
    uow: UowDep,
    role: Annotated[str | None, Query(max_length=20)] = None,
    limit: Annotated[int, Query(ge=1, le=2000)] = 500,
) -> list[PersonResponse]:
    """The practice's accounts with their role and state (admin)."""
    people = onboarding.list_people(actor, uow, role=role, limit=limit)
    return [
        PersonResponse(
            user_id=p.user_id,
            full_name=p.full_name,
            email=p.email,
            role=str(p.role),
            status=p.status,
            invite_expires_at=p.invite_expires_at,
            last_login_at=p.last_login_at,
        )
        for p in people
    ]


@router.post("/api/v1/auth/password-reset", response_model=PasswordResetAnswer, status_code=202)
def request_password_reset(body: PasswordResetRequest, address: ClientAddressDep) -> PasswordResetAnswer:
    """Ask for a password-reset link by e-mail. The answer is the same whether or not the e-mail has an account
    (429 when one address asks too often)."""
    detail = onboarding.request_password_reset(email=body.email, client_address=address, practice=body.practice)
    return PasswordResetAnswer(detail=detail)


@router.post("/api/v1/auth/password-reset/confirm", status_code=204)
def confirm_password_reset(body: PasswordResetConfirm) -> Response:
    """Set a new password with the token of a reset link (410 when the link expired or was used). Every session
    and API token of the account ends."""
    onboarding.reset_password(token=body.token, new_password=body.new_password)
    return Response(status_code=204)


@router.post("/api/v1/auth/invitation/accept", status_code=204)
def accept_invitation(body: InvitationAccept) -> Response:
    """Set the first password with the token of an invitation link and accept the terms (410 when the link
    expired or was used); then sign in with POST /api/v1/auth/token."""
    onboarding.accept_invitation(token=body.token, password=body.password, accept_terms=body.accept_terms)
    return Response(status_code=204)


def _self_registration(setting: onboarding.SelfRegistrationSetting) -> SelfRegistrationResponse:
    return SelfRegistrationResponse(enabled=setting.enabled, register_path=setting.register_path)


@router.get("/api/v1/self-registration", response_model=SelfRegistrationResponse)
def read_self_registration(actor: ActorDep, uow: UowDep) -> SelfRegistrationResponse:
    """Whether patients may create their own account in the practice (admin)."""
    return _self_registration(onboarding.get_self_registration(actor, uow))


@router.put("/api/v1/self-registration", response_model=SelfRegistrationResponse)
def write_self_registration(body: SelfRegistrationBody, actor: ActorDep, uow: UowDep) -> SelfRegistrationResponse:
    """Let patients create their own account, verified by e-mail, or stop it (admin; off by default; audited)."""
    setting = onboarding.set_self_registration(actor, uow, enabled=body.enabled)
    uow.commit()
    return _self_registration(setting)


@router.post("/api/v1/auth/register", response_model=RegistrationAnswer, status_code=202)
def register(body: RegistrationRequest, address: ClientAddressDep) -> RegistrationAnswer:
    """Create a patient account at a practice that takes registrations: the answer is always "check your e-mail"
    (a new e-mail gets a single-use verification link; one with an account here gets a message saying so instead).
    404 for an unknown practice, 403 when it does not take registrations, 422 with `field` for bad input, 429 when
    one address asks too often. Nothing is usable before the link is opened (POST /api/v1/auth/register/verify)."""
    detail = onboarding.register_patient(
        practice=body.practice,
        full_name=body.full_name,
        email=body.email,
        password=body.password,
        accept_terms=body.accept_terms,
        phone=body.phone,
        locale=body.locale,
        client_address=address,
    )
    return RegistrationAnswer(detail=detail)


@router.post("/api/v1/auth/register/verify", status_code=204)
def verify_registration(body: RegistrationVerify) -> Response:
    """Verify the e-mail with the token of the registration's link and the password chosen when registering: the
    patient's account exists from now on (410 when the link expired, was used or replaced; 422 for another
    password; 403 when the practice no longer takes registrations). Then sign in with POST /api/v1/auth/token."""
    onboarding.complete_registration(token=body.token, password=body.password)
    return Response(status_code=204)


# -- the pages' form posts (the browser follows the redirect) ------------------------------------------------


def _back(path: str, **query: str | int) -> RedirectResponse:
    return RedirectResponse(f"{path}?{urlencode(query)}" if query else path, status_code=303)


def _token_path(prefix: str, token: str) -> str:
    # Only the token's own characters go back into the address (it is URL-safe base64).
    safe = "".join(ch for ch in token if ch.isalnum() or ch in "-_")[: onboarding.TOKEN_MAX_LENGTH]
    return prefix + safe


@router.post("/auth/forgot", include_in_schema=False)
def browser_forgot(
    request: Request,
    email: Annotated[str, Form(max_length=320)] = "",
) -> RedirectResponse:
    """The "forgot password" form: always the same page after, unless one address asks too often."""
    try:
        onboarding.request_password_reset(email=email, client_address=client_address(request))
    except RateLimited as exc:
        return _back("/forgot", error="throttled", retry=exc.retry_after)
    except ValidationFailed:
        return _back("/forgot", error="email")
    return _back("/forgot", sent=1)


@router.post("/auth/reset", include_in_schema=False)
def browser_reset(
    token: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
) -> RedirectResponse:
    """The reset page's form: a new password, then the sign-in page (every session ended)."""
    try:
        onboarding.reset_password(token=token, new_password=password)
    except onboarding.LinkInvalid:
        return _back(_token_path("/reset/", token))
    except ValidationFailed as exc:
        return _back(_token_path("/reset/", token), error=exc.code)
    return _back("/login", reset=1)


@router.post("/auth/invite", include_in_schema=False)
def browser_accept_invitation(
    token: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    accept_terms: Annotated[str, Form(max_length=10)] = "",
) -> RedirectResponse:
    """The invitation page's form: password and terms, then signed in to the person's home page."""
    try:
        actor = onboarding.accept_invitation(token=token, password=password, accept_terms=accept_terms == "yes")
    except onboarding.LinkInvalid:
        return _back(_token_path("/invite/", token))
    except ValidationFailed as exc:
        return _back(_token_path("/invite/", token), error=exc.code if exc.field != "accept_terms" else "terms")
    return signed_in_response(actor, None)


@router.post("/auth/register/verify", include_in_schema=False)
def browser_verify_registration(
    token: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
) -> RedirectResponse:
    """The verification page's form: the password chosen when registering, then signed in to the patient's home."""
    try:
        actor = onboarding.complete_registration(token=token, password=password)
    except onboarding.LinkInvalid:
        return _back(_token_path("/verify/", token))
    except RateLimited as exc:
        return _back(_token_path("/verify/", token), error="throttled", retry=exc.retry_after)
    except DomainError as exc:
        return _back(_token_path("/verify/", token), error=exc.code)
    return signed_in_response(actor, None)
