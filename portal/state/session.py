"""Who is signed in: read from the HttpOnly session cookie on the server, re-checked by every handler."""

from __future__ import annotations

import json
from http.cookies import CookieError, SimpleCookie
from urllib.parse import quote, urlencode

import reflex as rx
from reflex.state import _override_base_method

from backend.audit import context as audit_context
from backend.db import UnitOfWork
from backend.identity import idle, mfa
from backend.identity import service as identity
from backend.identity.sso import MESSAGES as SSO_MESSAGES
from backend.observability.logs import bind_actor
from backend.settings import get_settings
from backend.tenancy.context import Actor, Role
from portal import i18n
from portal.state.client import FORGET_CLIENT_TOKEN_JS, owner_key, reset_client_tree

SESSION_ENDED = i18n.N_("Your session has ended. Sign in again.")
HOME_BY_ROLE = {"patient": "/patient", "doctor": "/doctor", "admin": "/admin"}
ROLE_LABELS = {"patient": i18n.N_("Patient"), "doctor": "Clinician", "admin": "Administrator"}


def session_token(state: rx.State) -> str | None:
    """The session cookie's value, from the websocket handshake (which carries HttpOnly cookies too)."""
    cookies: SimpleCookie = SimpleCookie()
    try:
        cookies.load(state.router.headers.cookie or "")
    except CookieError:
        return None
    morsel = cookies.get(get_settings().session_cookie)
    return morsel.value if morsel else None


def idle_sign_out_script(timeout_seconds: int | None, next_path: str = "") -> str:
    """The browser's part of an automatic logoff, once the server has revoked the session and reset the tab's state:
    forget the Reflex client token, have /auth/logout clear the cookie and the site's storage, and load the sign-in
    page (a full load: nothing of the old page survives in the DOM) with its notice. `timeout_seconds` None: the
    session ended otherwise (signed out elsewhere), and the notice says only that."""
    query = {"signed_out": "1"} if timeout_seconds is None else {"idle": str(max(0, int(timeout_seconds)))}
    if next_path.startswith("/") and not next_path.startswith("//"):
        query["next"] = next_path
    target = json.dumps(f"/login?{urlencode(query)}")
    return (
        f"(() => {{ try {{ {FORGET_CLIENT_TOKEN_JS}; }} catch (_e) {{}} "
        f"const go = () => window.location.replace({target}); "
        'fetch("/auth/logout", { method: "POST", credentials: "same-origin", redirect: "manual" }).then(go, go); })()'
    )


def idle_notice(value: str) -> str:
    """The sign-in page's notice after an automatic logoff (`?idle=<seconds>`)."""
    seconds = int(value) if value.isdigit() and len(value) <= 6 else 0
    if seconds <= 0:
        return "You were signed out after a time without activity."
    return f"You were signed out after {idle.describe(seconds)} without activity."


def _audit_via(state: rx.State) -> None:
    """Name this page and client for the reads this event makes (backend.audit.record_access)."""
    path = (state.router.url.path or "/").rstrip("/") or "/"
    try:
        address, tab = str(state.router.session.client_ip) or None, str(state.router.session.client_token)
    except AttributeError:
        address, tab = None, ""
    audit_context.enter(f"page {path}", address, f"{tab}:{path}" if tab else None)


class SessionState(rx.State):
    """The signed-in person's display data. The actor itself never leaves the server."""

    user_name: str = ""
    user_email: str = ""
    role: str = ""
    practice_name: str = ""
    # The language of the pages (portal/i18n.py `t`): the signed-in patient's preference; staff see English.
    lang: str = "en"
    # The role the last guard admitted for the current page; pages render only when it matches.
    admitted_role: str = ""
    # The page's role when the last guard turned a signed-in person of another role away (the shell then says
    # whom the page is for and links their own home), and that home.
    denied_role: str = ""
    home_path: str = ""
    # Server-only: whose session filled this client's state (see portal.state.client.owner_key).
    _client_owner: str = ""
    # Server-only: the revision each live audience had when this client linked it (portal.state.live._link).
    _live_linked: dict[str, int] = {}

    def _bind_to_session(self) -> bool:
        """Reset all of this client's state if it was filled under another session (or none); True if it was.

        Runs first in every websocket's hydrate (see `_reset_client_storage`) and again in the guard.
        """
        owner = owner_key(session_token(self))
        if self._client_owner == owner:
            return False
        reset_client_tree(self)
        self._client_owner = owner
        return True

    @_override_base_method  # Reflex refuses to let a state shadow its methods unless marked so
    def _reset_client_storage(self) -> None:
        """Reflex calls this on every state at the start of each hydrate, before the state snapshot is taken.

        The session cookie only changes with a new websocket, and each one starts with a hydrate: binding the
        state to the session here means no delta a tab receives ever carries another session's data.
        """
        if type(self) is SessionState:  # once per client, not again for each page state below it
            self._bind_to_session()
        super()._reset_client_storage()

    @rx.event
    def end_client_state(self):
        """Sign-out: forget everything this tab's client held (its browser forgets the client token too)."""
        reset_client_tree(self)

    def _actor(self, *roles: Role) -> Actor | None:
        """Resolve the session again (never trusted from earlier events); None unless it has one of `roles`."""
        actor = identity.actor_from_session(session_token(self))
        if actor is None or (roles and actor.role not in roles):
            return None
        _audit_via(self)
        bind_actor(actor)  # practice and account ids (never names) on this event's log lines
        return actor

    @rx.event
    def guard(self, role: str):
        """Admit the page for `role`; send a stranger to the login; tell anyone else whom the page is for."""
        self._bind_to_session()
        self.admitted_role = ""
        self.denied_role = ""
        # The page opening (or its socket coming back after a sleep) is no activity: it looks at the idle clock only.
        check = identity.check_browser_session(session_token(self), end_if_idle=True)
        actor = check.actor
        if actor is None:
            target = self.router.url.path or "/"
            if check.idle_ended:
                reset_client_tree(self)
                return rx.call_script(idle_sign_out_script(check.idle_timeout_seconds, target))
            if mfa.enrolment_actor_from_session(session_token(self)) is not None:
                # Signed in, but MFA must be set up first: that page is the only one this session reaches.
                return rx.redirect("/account/mfa")
            return rx.redirect(f"/login?next={quote(target)}")
        with UnitOfWork(actor) as uow:
            profile = identity.get_profile(actor, uow)
        self.user_name = profile.full_name
        self.user_email = profile.email
        self.role = str(profile.role)
        self.practice_name = profile.practice_name
        self.lang = i18n.normalise(profile.language) if actor.role == Role.PATIENT else "en"
        self.home_path = HOME_BY_ROLE.get(str(actor.role), "/")
        if role and actor.role != role:
            # No redirect: the page says it is for someone else and links this person's own home. Its own load
            # handlers find no actor of its role and read nothing.
            self.denied_role = role
            return None
        self.admitted_role = str(actor.role)
        return None

    @rx.event
    def go_home(self):
        """Send the visitor to their role's home, or to the login."""
        actor = self._actor()
        if actor is None:
            return rx.redirect("/login")
        return rx.redirect(HOME_BY_ROLE.get(str(actor.role), "/login"))

    @rx.var
    def role_label(self) -> str:
        return i18n.tr(self.lang, ROLE_LABELS.get(self.role, ""))

    @rx.var
    def initials(self) -> str:
        parts = [p for p in self.user_name.replace(".", " ").split() if p[:1].isalpha()]
        return "".join(p[0] for p in parts[-2:]).upper() or "?"


class LoginState(rx.State):
    """The login page's message, read from the redirect the login route sends back."""

    error: str = ""
    notice: str = ""
    next_path: str = ""
    ask_practice: bool = False
    # The practice of a single sign-on that came back refused: its form is shown again, filled in.
    sso_practice: str = ""

    @rx.event
    def load(self):
        params = self.router.url.query_parameters
        self.next_path = params.get("next", "")
        self.notice = "You have been signed out." if params.get("signed_out") else ""
        if params.get("reset"):
            self.notice = "Your password was changed, and every device was signed out. Sign in with the new password."
        if params.get("idle"):
            self.notice = idle_notice(params.get("idle", ""))
        error = params.get("error", "")
        self.ask_practice = error == "practice"
        if error == "practice":
            self.error = "This email has accounts at several practices. Enter the practice's short name too."
        elif error == "mfa_expired":
            self.error = "Your sign-in took too long. Enter your email and password again."
        elif error == "invalid":
            self.error = "Incorrect email or password."
        elif error == "throttled":
            retry = params.get("retry", "")
            seconds = f" {retry} seconds" if retry.isdigit() else " a moment"
            self.error = f"Too many failed attempts. For your security, wait{seconds} before trying again."
        elif error in SSO_MESSAGES:
            self.error = SSO_MESSAGES[error]
        else:
            self.error = ""
        self.sso_practice = params.get("practice", "")[:60] if error.startswith("sso_") else ""
        # Already signed in: skip the form.
        actor = identity.actor_from_session(session_token(self))
        if actor is not None and not error:
            return rx.redirect(HOME_BY_ROLE.get(str(actor.role), "/"))
        return None
