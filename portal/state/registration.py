"""Self-registration: the newcomer's form (/register/<practice>), the verification link's page (/verify/<token>),
the sign-in page's "New patient?" link, and the admin's switch on the People page.

The form calls the service from its handler (it signs nobody in, so no cookie is set; the typed values stay in the
form when a field is refused). The verification page posts natively to /auth/register/verify, which sets the
session cookie (backend/api/routes/onboarding.py); its state only reads the link and words the error sent back.
"""

from __future__ import annotations

from typing import Any

import reflex as rx

from backend.db import UnitOfWork
from backend.errors import DomainError, NotFound, RateLimited, ValidationFailed
from backend.identity import onboarding, passwords
from backend.settings import get_settings
from portal.state.admin import AdminState
from portal.state.errors import words_for
from portal.state.onboarding import password_error
from portal.state.ratelimit import client_address
from portal.state.session import SESSION_ENDED

FIELDS = ("full_name", "email", "phone", "password", "accept_terms", "locale")
PASSWORD_CODES = {passwords.TOO_SHORT, passwords.TOO_LONG, passwords.IS_EMAIL, passwords.IS_NAME, passwords.COMMON}
NOT_OPEN = "Online registration is not open at this practice. Ask the practice to send you an invitation."
VERIFY_ERRORS = {
    "registration_password_mismatch": (
        "This is not the password you chose when you registered. Enter that one; if you no longer know it, "
        "register again for a new link."
    ),
    "registration_exists": (
        "An account with this e-mail address already exists at this practice. Sign in, or choose a new password "
        "with “Forgot your password?”."
    ),
    "registration_closed": NOT_OPEN,
}


def _segment_after(state: rx.State, prefix: str, limit: int) -> str:
    """The address's part after /<prefix>/ (the practice's short name, or the link's token)."""
    parts = [p for p in (state.router.url.path or "").split("/") if p]
    return parts[1][:limit] if len(parts) >= 2 and parts[0] == prefix else ""


class RegisterState(rx.State):
    """/register/[practice]: the practice's registration form, or why there is none."""

    checked: bool = False
    found: bool = False
    open: bool = False
    practice: str = ""
    slug: str = ""
    sent: bool = False
    sent_text: str = ""
    errors: dict[str, str] = {}
    form_error: str = ""
    # Bumped on each load: a new visit starts with an empty form.
    form_key: int = 0

    @rx.event
    def load(self):
        self.checked, self.sent, self.errors, self.form_error = False, False, {}, ""
        info = onboarding.registration_info(_segment_after(self, "register", 60))
        self.found = info is not None
        self.open = bool(info and info.open)
        self.practice = info.practice_name if info else ""
        self.slug = info.practice_slug if info else ""
        self.form_key += 1
        self.checked = True

    @rx.event
    def submit(self, form: dict[str, Any]):
        """Register; the answer is "check your e-mail" whether or not the address has an account here."""
        if not self.open or self.sent:
            return
        self.errors, self.form_error = {}, ""
        try:
            self.sent_text = onboarding.register_patient(
                practice=self.slug,
                full_name=str(form.get("full_name") or ""),
                email=str(form.get("email") or ""),
                phone=str(form.get("phone") or ""),
                password=str(form.get("password") or ""),
                accept_terms=form.get("accept_terms") in ("yes", "on", True),
                locale=str(form.get("locale") or "en"),
                client_address=client_address(self),
            )
        except ValidationFailed as exc:
            field = exc.field if exc.field in FIELDS else "form"
            words = password_error(exc.code) if exc.code in PASSWORD_CODES else words_for(exc)
            if field == "form":
                self.form_error = words
            else:
                self.errors = {field: words}
            return
        except RateLimited as exc:
            self.form_error = f"Too many requests from this network. Try again in {exc.retry_after} seconds."
            return
        except onboarding.RegistrationClosed:
            self.open = False
            return
        except NotFound:
            self.found = self.open = False
            return
        self.sent = True

    @rx.var
    def terms_href(self) -> str:
        return f"/terms?practice={self.slug}"

    @rx.var
    def privacy_href(self) -> str:
        return f"/privacy?practice={self.slug}"

    @rx.var
    def login_href(self) -> str:
        return f"/login?practice={self.slug}" if self.slug else "/login"

    @rx.var
    def min_length(self) -> int:
        return get_settings().min_password_length

    @rx.var
    def valid_for(self) -> str:
        return onboarding.valid_for(onboarding.VERIFY)


class VerifyState(rx.State):
    """/verify/[token]: whether the link still works, for whom, and the error the form's route sent back."""

    checked: bool = False
    valid: bool = False
    practice: str = ""
    slug: str = ""
    first_name: str = ""
    email: str = ""
    error: str = ""
    # The visitor's own token from the address, posted back by the form (it is theirs: it came in their URL).
    token: str = ""

    @rx.event
    def load(self):
        self.checked, self.valid = False, False
        self.token = _segment_after(self, "verify", onboarding.TOKEN_MAX_LENGTH)
        try:
            view = onboarding.inspect_registration(self.token)
        except onboarding.LinkInvalid:
            self.practice = self.slug = self.first_name = self.email = self.token = ""
        else:
            self.valid = True
            self.practice, self.slug = view.practice_name, view.practice_slug
            self.first_name, self.email = view.first_name, view.email
        self.error = self._error_words() if self.valid else ""
        self.checked = True

    def _error_words(self) -> str:
        params = self.router.url.query_parameters
        code = str(params.get("error", ""))[:40]
        if code == "throttled":
            retry = str(params.get("retry", ""))
            wait = f"{retry} seconds" if retry.isdigit() and len(retry) <= 5 else "a while"
            return f"Too many attempts with this link. Try again in {wait}."
        if not code:
            return ""
        return VERIFY_ERRORS.get(code) or password_error(code)

    @rx.var
    def login_href(self) -> str:
        return f"/login?practice={self.slug}" if self.slug else "/login"

    @rx.var
    def valid_for(self) -> str:
        return onboarding.valid_for(onboarding.VERIFY)


class RegisterLinkState(rx.State):
    """The sign-in page's "New patient? Create an account" link: shown for `?practice=<short name>` when that
    practice takes registrations (the sign-in itself serves every practice)."""

    register_href: str = ""
    practice: str = ""

    @rx.event
    def load(self):
        slug = str(self.router.url.query_parameters.get("practice", ""))[:60]
        info = onboarding.registration_info(slug) if slug else None
        if info is not None and info.open:
            self.register_href, self.practice = f"/register/{info.practice_slug}", info.practice_name
        else:
            self.register_href = self.practice = ""


class SelfRegistrationAdminState(AdminState):
    """The People page's switch: patients may create their own account (audited by the service)."""

    registration_enabled: bool = False
    registration_slug: str = ""
    registration_loaded: bool = False

    @rx.event
    def load_registration(self):
        actor = self._admin()
        if actor is None:
            return
        with UnitOfWork(actor) as uow:
            setting = onboarding.get_self_registration(actor, uow)
        self.registration_enabled, self.registration_slug = setting.enabled, setting.practice_slug
        self.registration_loaded = True

    @rx.event
    def set_registration(self, enabled: bool):
        actor = self._admin()
        if actor is None:
            return rx.toast.error(SESSION_ENDED)
        try:
            with UnitOfWork(actor) as uow:
                setting = onboarding.set_self_registration(actor, uow, enabled=bool(enabled))
                uow.commit()
        except DomainError as exc:
            return rx.toast.error(words_for(exc))
        self.registration_enabled, self.registration_slug = setting.enabled, setting.practice_slug
        if setting.enabled:
            return rx.toast.success("Patients can now create their own account, verified by e-mail.")
        return rx.toast.success("Online registration is off: only people you invite get an account.")

    @rx.var
    def register_path(self) -> str:
        return f"/register/{self.registration_slug}" if self.registration_slug else ""

    @rx.var
    def register_url(self) -> str:
        return get_settings().public_url.rstrip("/") + self.register_path
