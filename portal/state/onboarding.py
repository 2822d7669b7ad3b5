"""Onboarding pages: the invitation and reset links (no sign-in), "forgot password", and the admin's People page.

The link pages post their forms natively (portal/components/native_form.py) to /auth/invite and /auth/reset, which
set the session cookie or send the person to the sign-in page (backend/api/routes/onboarding.py); these states only
read the link's state for the page and word the errors the routes send back.
"""

from __future__ import annotations

import uuid

import reflex as rx

from backend.db import UnitOfWork
from backend.errors import DomainError
from backend.identity import mfa, onboarding, passwords
from backend.identity import service as identity
from backend.settings import get_settings
from backend.tenancy.context import Role
from portal.state.admin import AdminState
from portal.state.errors import words_for

ROLE_NAMES = {"patient": "Patient", "doctor": "Clinician", "admin": "Administrator"}
STATUS_NAMES = {
    "active": "Active",
    "invited": "Invited",
    "invite expired": "Invitation expired",
    "deactivated": "Deactivated",
}


def password_error(code: str) -> str:
    """The sentence for a refused password, by the code the form route sent back (never text from the address)."""
    minimum = get_settings().min_password_length
    return {
        passwords.TOO_SHORT: f"Choose a password of at least {minimum} characters.",
        passwords.TOO_LONG: f"Choose a password of at most {passwords.MAX_LENGTH} characters.",
        passwords.IS_EMAIL: "Choose a password that is not your email address.",
        passwords.IS_NAME: "Choose a password that is not your name.",
        passwords.COMMON: (
            "This password is too common: it appears in lists of passwords that attackers try first. "
            "Choose another, for example a few unrelated words."
        ),
        "terms": "Accept the terms of use to continue.",
    }.get(code, "Check the password and try again." if code else "")


class LinkState(rx.State):
    """/invite/[token] and /reset/[token]: what the link is for and whether it still works."""

    checked: bool = False
    valid: bool = False
    purpose: str = ""
    practice: str = ""
    # The practice's short name: its Terms and Privacy pages are /terms?practice=<slug> and /privacy?practice=<slug>.
    practice_slug: str = ""
    first_name: str = ""
    email: str = ""
    role: str = ""
    error: str = ""
    # The visitor's own token from the address, posted back by the form (it is theirs: it came in their URL).
    token: str = ""

    def _token_from(self, prefix: str) -> str:
        parts = [p for p in (self.router.url.path or "").split("/") if p]
        return parts[1] if len(parts) >= 2 and parts[0] == prefix else ""

    def _load(self, purpose: str, prefix: str) -> None:
        self.checked, self.valid, self.purpose = False, False, purpose
        self.token = self._token_from(prefix)[: onboarding.TOKEN_MAX_LENGTH]
        try:
            view = onboarding.inspect_link(self.token, purpose)
        except onboarding.LinkInvalid:
            self.practice = self.practice_slug = self.first_name = self.email = self.role = self.token = ""
        else:
            self.valid = True
            self.practice, self.first_name, self.email = view.practice_name, view.first_name, view.email
            self.practice_slug = view.practice_slug
            self.role = str(view.role)
        self.error = password_error(self.router.url.query_parameters.get("error", "")[:40]) if self.valid else ""
        self.checked = True

    @rx.event
    def load_invite(self):
        self._load(onboarding.INVITE, "invite")

    @rx.event
    def load_reset(self):
        self._load(onboarding.RESET, "reset")

    @rx.var
    def terms_href(self) -> str:
        return f"/terms?practice={self.practice_slug}"

    @rx.var
    def privacy_href(self) -> str:
        return f"/privacy?practice={self.practice_slug}"

    @rx.var
    def min_length(self) -> int:
        return get_settings().min_password_length

    @rx.var
    def invite_valid_for(self) -> str:
        return onboarding.valid_for(onboarding.INVITE)

    @rx.var
    def reset_valid_for(self) -> str:
        return onboarding.valid_for(onboarding.RESET)


class ForgotState(rx.State):
    """/forgot: the answer after the form (the same whether or not the e-mail has an account).

    Both come from the address the form's POST redirected to (?sent=1, ?error=...), read from the router rather
    than kept in the tab's state, so coming back to /forgot in the same tab never shows the previous answer
    first (nor loses what was typed when an on_load reset it)."""

    @rx.var
    def sent(self) -> bool:
        return self.router.url.query_parameters.get("sent") == "1"

    @rx.var
    def error(self) -> str:
        params = self.router.url.query_parameters
        error = params.get("error", "")
        if error == "throttled":
            retry = params.get("retry", "")
            wait = f"{retry} seconds" if retry.isdigit() and len(retry) <= 5 else "a few minutes"
            return f"Too many requests from this network. Try again in {wait}."
        if error == "email":
            return "Enter the e-mail address you sign in with."
        return ""

    @rx.var
    def sent_text(self) -> str:
        return onboarding.RESET_SENT

    @rx.var
    def valid_for(self) -> str:
        return onboarding.valid_for(onboarding.RESET)


class PeopleState(AdminState):
    """/admin/people: invite patients and staff, send an invitation again, deactivate an account."""

    people: list[dict[str, str]] = []
    role_filter: str = "all"
    dialog_open: bool = False
    form_role: str = "patient"
    form_errors: dict[str, str] = {}
    confirm_id: str = ""
    confirm_name: str = ""
    mfa_reset_id: str = ""
    mfa_reset_name: str = ""
    # Server-only: the signed-in admin's own user id (they cannot deactivate themselves).
    _self_id: str = ""

    def _reload(self) -> None:
        actor = self._admin()
        if actor is None:
            return
        self._self_id = str(actor.user_id or "")
        with UnitOfWork(actor) as uow:
            found = onboarding.list_people(actor, uow)
        self.people = [
            {
                "id": str(p.user_id),
                "name": p.full_name,
                "email": p.email,
                "role": str(p.role),
                "role_name": ROLE_NAMES.get(str(p.role), str(p.role)),
                "status": p.status,
                "status_name": STATUS_NAMES.get(p.status, p.status),
                "can_resend": "1" if p.status in ("invited", "invite expired") else "",
                "can_deactivate": "1" if p.status == "active" and str(p.user_id) != self._self_id else "",
                "can_reset_mfa": "1" if p.mfa_enabled and str(p.user_id) != self._self_id else "",
                "expires": p.invite_expires_at.strftime("%d %b %Y, %H:%M UTC") if p.invite_expires_at else "",
            }
            for p in found
        ]

    @rx.event
    def load_people(self):
        actor = self._admin()
        if actor is None:
            return
        self._refresh(actor)
        self._reload()

    @rx.event
    def set_role_filter(self, value: str):
        self.role_filter = value

    @rx.var
    def visible_people(self) -> list[dict[str, str]]:
        if self.role_filter == "staff":
            return [p for p in self.people if p["role"] != "patient"]
        if self.role_filter == "patient":
            return [p for p in self.people if p["role"] == "patient"]
        return self.people

    @rx.var
    def open_clinics(self) -> list[dict[str, str]]:
        return [{"id": c["id"], "name": c["name"]} for c in self.clinics if not c["archived"]]

    @rx.event
    def open_invite(self):
        self.form_errors, self.form_role, self.dialog_open = {}, "patient", True

    @rx.event
    def set_dialog_open(self, value: bool):
        self.dialog_open = value

    @rx.event
    def set_form_role(self, value: str):
        self.form_role = value if value in ROLE_NAMES else "patient"

    @rx.event
    def invite(self, form: dict[str, str]):
        """Create the account and send the link; errors beside the fields, nothing created on failure."""
        actor = self._admin()
        if actor is None:
            return rx.toast.error("Your session has ended. Sign in again.")
        role = form.get("role") or self.form_role
        raw_clinic = (form.get("clinic_id") or "").strip()
        try:
            clinic_id = uuid.UUID(raw_clinic) if raw_clinic else None
        except ValueError:
            self.form_errors = {"clinic_id": "Choose a clinic from the list."}
            return None
        try:
            with UnitOfWork(actor) as uow:
                result = onboarding.invite_person(
                    actor,
                    uow,
                    full_name=form.get("full_name", ""),
                    email=form.get("email", ""),
                    role=role,
                    phone=form.get("phone", ""),
                    clinic_id=clinic_id,
                    title=form.get("title", "") if role == Role.DOCTOR else "",
                )
                uow.commit()
        except DomainError as exc:
            self.form_errors = {exc.field or "form": words_for(exc)}
            return None
        self.form_errors, self.dialog_open = {}, False
        self._reload()
        where = "the Outbox" if _console() else "their e-mail" + (" and phone" if form.get("phone") else "")
        return rx.toast.success(
            f"Invitation sent to {form.get('email', '').strip()} ({ROLE_NAMES[str(result.role)].lower()}): "
            f"the link is in {where}."
        )

    @rx.event
    def resend(self, user_id: str):
        actor = self._admin()
        if actor is None:
            return rx.toast.error("Your session has ended. Sign in again.")
        try:
            with UnitOfWork(actor) as uow:
                onboarding.resend_invitation(actor, uow, uuid.UUID(user_id))
                uow.commit()
        except (DomainError, ValueError) as exc:
            self._reload()
            return rx.toast.error(words_for(exc) if isinstance(exc, DomainError) else "That account no longer exists.")
        self._reload()
        return rx.toast.success("A new invitation link was sent; the earlier one no longer works.")

    @rx.event
    def ask_deactivate(self, user_id: str, name: str):
        self.confirm_id, self.confirm_name = user_id, name

    @rx.event
    def cancel_deactivate(self):
        self.confirm_id = self.confirm_name = ""

    @rx.event
    def confirm_deactivate(self):
        """Deactivate the account: they cannot sign in, and every session and token of theirs ends now."""
        actor = self._admin()
        if actor is None:
            return rx.toast.error("Your session has ended. Sign in again.")
        name, user_id = self.confirm_name, self.confirm_id
        self.confirm_id = self.confirm_name = ""
        try:
            with UnitOfWork(actor) as uow:
                identity.disable_user(actor, uow, uuid.UUID(user_id))
                uow.commit()
        except (DomainError, ValueError) as exc:
            self._reload()
            return rx.toast.error(words_for(exc) if isinstance(exc, DomainError) else "That account no longer exists.")
        self._reload()
        return rx.toast.success(f"{name} is deactivated and signed out everywhere.")


    @rx.event
    def ask_reset_mfa(self, user_id: str, name: str):
        self.mfa_reset_id, self.mfa_reset_name = user_id, name

    @rx.event
    def cancel_reset_mfa(self):
        self.mfa_reset_id = self.mfa_reset_name = ""

    @rx.event
    def confirm_reset_mfa(self):
        """Remove a staff member's MFA (a lost phone): they set it up again when they next sign in; sessions end."""
        actor = self._admin()
        if actor is None:
            return rx.toast.error("Your session has ended. Sign in again.")
        name, user_id = self.mfa_reset_name, self.mfa_reset_id
        self.mfa_reset_id = self.mfa_reset_name = ""
        try:
            with UnitOfWork(actor) as uow:
                mfa.reset_mfa(actor, uow, uuid.UUID(user_id))
                uow.commit()
        except (DomainError, ValueError) as exc:
            self._reload()
            return rx.toast.error(words_for(exc) if isinstance(exc, DomainError) else "That account no longer exists.")
        self._reload()
        return rx.toast.success(f"{name}'s MFA is reset: they set it up again when they next sign in.")


def _console() -> bool:
    from backend.notifications.outbox import channel_mode

    return channel_mode() == "console"
