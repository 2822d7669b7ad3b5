"""Sign in. The form posts to /auth/login, which sets the HttpOnly session cookie."""

from __future__ import annotations

from typing import Any

import reflex as rx
from reflex_base.vars.base import Var

from portal.components.fields import field_label
from portal.components.native_form import native_form
from portal.components.shell import APP_NAME
from portal.state.client import FORGET_CLIENT_TOKEN_JS
from portal.state.mfa import LoginMfaState
from portal.state.registration import RegisterLinkState
from portal.state.session import LoginState

_FORGET_CLIENT_JS = f"""
function WaitwellForgetClient(props) {{
  // Whoever signs in next on this tab starts a new Reflex client (portal.state.client): forget the token now.
  useEffect(() => {{ {FORGET_CLIENT_TOKEN_JS}; }}, []);
  return jsx("span", {{ hidden: true, ...props }});
}}
"""


class ForgetClient(rx.Component):
    """On mount, the browser forgets this tab's Reflex client token (the next page load gets a new one)."""

    library: str | None = None
    tag: str | None = "WaitwellForgetClient"

    def add_imports(self) -> dict[str, Any]:
        return {"react": [rx.ImportVar(tag="useEffect")], "@emotion/react": [rx.ImportVar(tag="jsx")]}

    def add_custom_code(self) -> list[str]:
        return [_FORGET_CLIENT_JS]


def _field(label: str, name: str, kind: str, autocomplete: str) -> rx.Component:
    return rx.vstack(
        field_label(label, name),
        rx.input(id=name, name=name, type=kind, required=True, auto_complete=autocomplete, size="3", width="100%"),
        spacing="1",
        width="100%",
    )


# The form's own GET would be a form submission, and the page's CSP (form-action 'self') stops a form submission's
# redirects from leaving the site, so the browser could never reach the provider. A plain navigation to the same
# URL is not a form submission: the handler goes there itself (forgetting the tab's client token, like the sign-in
# form, so the signed-in page starts a new client).
_SSO_SUBMIT_JS = (
    "((_e) => { _e.preventDefault(); "
    f"try {{ {FORGET_CLIENT_TOKEN_JS}; }} catch (_err) {{}} "
    "const q = new URLSearchParams(new FormData(_e.currentTarget)); "
    'window.location.assign(_e.currentTarget.getAttribute("action") + "?" + q.toString()); })'
)


def _sso_form() -> rx.Component:
    """Staff of a practice with single sign-on go to their organisation's sign-in (GET /auth/sso/start)."""
    form = rx.el.form(
        rx.vstack(
            rx.hstack(
                rx.separator(size="4", flex="1"),
                rx.text("or", size="2", color_scheme="gray"),
                rx.separator(size="4", flex="1"),
                align="center",
                width="100%",
            ),
            rx.vstack(
                field_label("Practice staff: your practice's short name", "sso-practice"),
                rx.input(
                    id="sso-practice",
                    name="practice",
                    required=True,
                    default_value=LoginState.sso_practice,
                    placeholder="e.g. harbor",
                    max_length=60,
                    auto_complete="organization",
                    size="3",
                    width="100%",
                ),
                spacing="1",
                width="100%",
            ),
            rx.el.input(type="hidden", name="next", value=LoginState.next_path),
            rx.button(
                rx.icon("building-2", size=18),
                "Sign in with your organisation",
                type="submit",
                variant="outline",
                size="3",
                width="100%",
            ),
            spacing="3",
            width="100%",
            margin_top="16px",
        ),
        action="/auth/sso/start",
        method="get",
        id="sso-form",
    )
    form.event_triggers.pop("on_submit", None)
    form.custom_attrs["onSubmit"] = Var(_js_expr=_SSO_SUBMIT_JS)
    return form


def _register_link() -> rx.Component:
    """For `/login?practice=<short name>` of a practice that takes registrations (the sign-in serves every practice,
    so only a link naming the practice can offer its registration)."""
    return rx.cond(
        RegisterLinkState.register_href != "",
        rx.text(
            "New patient? ",
            rx.link("Create an account", href=RegisterLinkState.register_href, id="register-link", underline="always"),
            size="2",
        ),
    )


@rx.page(route="/login", title=f"Sign in · {APP_NAME}", on_load=[LoginState.load, RegisterLinkState.load])
def login() -> rx.Component:
    return rx.center(
        rx.card(
            native_form(
                rx.vstack(
                    rx.hstack(
                        rx.icon("calendar-heart", size=28, color=rx.color("accent", 9)),
                        rx.heading(APP_NAME, size="6"),
                        align="center",
                        spacing="2",
                    ),
                    rx.text("Sign in to book, manage your appointments and waitlist.", color_scheme="gray", size="2"),
                    rx.cond(
                        LoginState.error != "",
                        rx.callout(
                            LoginState.error, icon="circle-alert", color_scheme="red", role="alert", width="100%"
                        ),
                    ),
                    rx.cond(
                        LoginState.notice != "",
                        rx.callout(LoginState.notice, icon="info", color_scheme="green", width="100%"),
                    ),
                    _field("Email", "email", "email", "username"),
                    _field("Password", "password", "password", "current-password"),
                    rx.link("Forgot your password?", href="/forgot", size="2", id="forgot-link"),
                    rx.cond(
                        LoginState.ask_practice,
                        rx.vstack(
                            field_label("Practice (short name, e.g. harbor)", "practice"),
                            rx.input(id="practice", name="practice", required=True, size="3", width="100%"),
                            spacing="1",
                            width="100%",
                        ),
                    ),
                    rx.el.input(type="hidden", name="next", value=LoginState.next_path),
                    rx.button("Sign in", type="submit", size="3", width="100%"),
                    _register_link(),
                    spacing="4",
                    width="100%",
                ),
                action="/auth/login",
                forget_client=True,
            ),
            _sso_form(),
            ForgetClient.create(),
            size="4",
            width="100%",
            max_width="420px",
        ),
        min_height="100vh",
        padding="16px",
        background=rx.color("accent", 2),
    )


@rx.page(route="/login/mfa", title=f"Enter your code · {APP_NAME}", on_load=LoginMfaState.load)
def login_mfa() -> rx.Component:
    """The second step of a sign-in with MFA: the form posts the code to /auth/login/mfa."""
    return rx.center(
        rx.card(
            native_form(
                rx.vstack(
                    rx.hstack(
                        rx.icon("shield-check", size=28, color=rx.color("accent", 9)),
                        rx.heading("Two-step sign-in", size="6"),
                        align="center",
                        spacing="2",
                    ),
                    rx.text(
                        "Enter the 6-digit code from your authenticator app, or one of your recovery codes.",
                        color_scheme="gray",
                        size="2",
                    ),
                    rx.cond(
                        LoginMfaState.error != "",
                        rx.callout(
                            LoginMfaState.error, icon="circle-alert", color_scheme="red", role="alert", width="100%"
                        ),
                    ),
                    rx.vstack(
                        field_label("Code", "code"),
                        rx.input(
                            id="code",
                            name="code",
                            required=True,
                            auto_complete="one-time-code",
                            auto_focus=True,
                            max_length=24,
                            size="3",
                            width="100%",
                        ),
                        spacing="1",
                        width="100%",
                    ),
                    rx.el.input(type="hidden", name="next", value=LoginMfaState.next_path),
                    rx.button("Verify", type="submit", size="3", width="100%"),
                    rx.link("Start over", href="/login", size="2"),
                    spacing="4",
                    width="100%",
                ),
                action="/auth/login/mfa",
                forget_client=True,
            ),
            size="4",
            width="100%",
            max_width="420px",
        ),
        min_height="100vh",
        padding="16px",
        background=rx.color("accent", 2),
    )
