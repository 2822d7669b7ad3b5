"""Two-step sign-in pages: the code step of the login (/login/mfa) and the account's MFA page (/account/mfa)."""

from __future__ import annotations

from collections.abc import Callable
from http.cookies import CookieError, SimpleCookie
from typing import Any

import reflex as rx

from backend.db import UnitOfWork
from backend.errors import DomainError
from backend.identity import mfa
from backend.identity import service as identity
from backend.tenancy.context import Actor
from portal.state.session import HOME_BY_ROLE, SessionState, session_token


def _pending_cookie(state: rx.State) -> str | None:
    cookies: SimpleCookie = SimpleCookie()
    try:
        cookies.load(state.router.headers.cookie or "")
    except CookieError:
        return None
    morsel = cookies.get(mfa.pending_cookie_name())
    return morsel.value if morsel else None


class LoginMfaState(rx.State):
    """The code step: the form posts to /auth/login/mfa with the HttpOnly pending-MFA cookie."""

    error: str = ""
    next_path: str = ""

    @rx.event
    def load(self):
        params = self.router.url.query_parameters
        self.next_path = params.get("next", "")
        error = params.get("error", "")
        if error == "invalid":
            self.error = mfa.BAD_CODE
        elif error == "throttled":
            retry = params.get("retry", "")
            seconds = f" {retry} seconds" if retry.isdigit() else " a moment"
            self.error = f"Too many failed attempts. For your security, wait{seconds} before trying again."
        else:
            self.error = ""
        # Without a pending sign-in (expired, or never started) there is nothing to confirm.
        if mfa.read_pending(_pending_cookie(self)) is None:
            return rx.redirect("/login?error=mfa_expired" if error else "/login")
        return None


class MfaAccountState(SessionState):
    """Set up MFA (enrolment), see its status, replace the recovery codes.

    The secret is in this state (and so in the browser) only while enrolment is unconfirmed, to be typed in;
    it is cleared once a code confirms it, and nothing reads it back after that.
    """

    checked: bool = False
    restricted: bool = False  # an enrolment-only session: nothing else until MFA is set up
    enrolled: bool = False
    required: bool = False
    enabled_at: str = ""
    codes_left: int = 0
    enrolling: bool = False
    secret: str = ""
    qr: str = ""
    recovery_codes: list[str] = []
    message: str = ""
    code_error: str = ""
    home: str = "/"

    def _mfa_actor(self) -> Actor | None:
        token = session_token(self)
        actor = identity.actor_from_session(token)
        self.restricted = False
        if actor is None:
            actor = mfa.enrolment_actor_from_session(token)
            self.restricted = actor is not None
        return actor

    def _clear_secret(self) -> None:
        self.secret = ""
        self.qr = ""
        self.enrolling = False

    def _read_status(self, actor: Actor) -> None:
        with UnitOfWork(actor) as uow:
            status = mfa.get_mfa_status(actor, uow)
        self.enrolled = status.enrolled
        self.required = status.required
        self.enabled_at = status.enabled_at[:10]
        self.codes_left = status.recovery_codes_left
        self.home = HOME_BY_ROLE.get(str(actor.role), "/")

    def _start(self, actor: Actor) -> None:
        with UnitOfWork(actor) as uow:
            enrolment = mfa.begin_enrolment(actor, uow)
            uow.commit()
        self.secret = enrolment.secret
        self.qr = enrolment.qr_data_uri
        self.enrolling = True

    @rx.event
    def load(self):
        self._bind_to_session()
        self.checked = False
        self.message = ""
        self.code_error = ""
        self.recovery_codes = []
        self._clear_secret()
        actor = self._mfa_actor()
        if actor is None:
            return rx.redirect("/login?next=/account/mfa")
        self._read_status(actor)
        if not self.enrolled and (self.required or self.restricted):
            self._start(actor)
        self.checked = True
        return None

    @rx.event
    def start(self):
        actor = self._mfa_actor()
        if actor is None:
            return rx.redirect("/login?next=/account/mfa")
        self.code_error = ""
        try:
            self._start(actor)
        except DomainError as exc:
            self.code_error = exc.message
        return None

    def _with_code(self, form: dict[str, Any], step: Callable[..., list[str]], *, enrolled: bool):
        """Run `step` (confirm enrolment, or new recovery codes) with the code the form sent; show the new codes."""
        actor = self._mfa_actor()
        if actor is None:
            return rx.redirect("/login?next=/account/mfa")
        code = str(form.get("code", ""))[:24]
        try:
            with UnitOfWork(actor) as uow:
                codes = step(actor, uow, code=code)
                uow.commit()
        except DomainError as exc:
            self.code_error = exc.message
            return None
        if enrolled:
            self._clear_secret()
            self.restricted = False
        self.code_error = ""
        self.recovery_codes = codes
        self._read_status(actor)
        return None

    @rx.event
    def confirm(self, form: dict[str, Any]):
        return self._with_code(form, mfa.confirm_enrolment, enrolled=True)

    @rx.event
    def regenerate(self, form: dict[str, Any]):
        return self._with_code(form, mfa.regenerate_recovery_codes, enrolled=False)

    @rx.event
    def done(self):
        """Leave the recovery codes behind (they are never shown again) and go on."""
        self.recovery_codes = []
        actor = self._mfa_actor()
        if actor is None:
            return rx.redirect("/login")
        return rx.redirect(HOME_BY_ROLE.get(str(actor.role), "/"))
