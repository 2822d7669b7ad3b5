"""Pages without sign-in for getting in: /invite/<token> (first password and terms), /forgot, /reset/<token>, and
self-registration: /register/<practice> (a newcomer's form, when the practice takes registrations) and
/verify/<token> (the e-mailed link that creates the account).

A link that expired, was used or replaced gets one clear page saying so and what to do next, never an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import reflex as rx

from portal.components.fields import error_attrs, field_error, field_label
from portal.components.native_form import native_form
from portal.components.shell import APP_NAME
from portal.state.onboarding import ForgotState, LinkState
from portal.state.registration import RegisterState, VerifyState


def _card(*children: rx.Component, icon: str = "calendar-heart") -> rx.Component:
    return rx.center(
        rx.card(
            rx.vstack(
                rx.hstack(
                    rx.icon(icon, size=24, color=rx.color("accent", 11)),
                    rx.text(APP_NAME, size="5", weight="bold"),
                    align="center",
                    spacing="2",
                ),
                *children,
                spacing="4",
                width="100%",
            ),
            size="4",
            width="100%",
            max_width="460px",
        ),
        min_height="100vh",
        padding="16px",
        background=rx.color("accent", 2),
    )


def _loading() -> rx.Component:
    return rx.center(rx.spinner(size="3"), height="60vh", aria_label="Loading")


def _alert(message: rx.Var) -> rx.Component:
    return rx.cond(
        message != "",
        rx.callout(message, icon="circle-alert", color_scheme="red", role="alert", width="100%", id="form-error"),
    )


def _heading(*parts: str | rx.Var, **props: Any) -> rx.Component:
    return rx.heading(*parts, size="5", as_="h1", **props)


def _text_field(label: str, name: str, *after: rx.Component, ident: str = "", **props: Any) -> rx.Component:
    """A labelled input (its id `ident`, else its name) and what follows it: a hint, its error."""
    ident = ident or name
    return rx.vstack(
        field_label(label, ident),
        rx.input(id=ident, name=name, size="3", width="100%", **props),
        *after,
        spacing="1",
        width="100%",
    )


def _form_body(
    *intro: rx.Component,
    error: rx.Var,
    fields: Sequence[rx.Component],
    submit: str,
    after: Sequence[rx.Component] = (),
) -> rx.Component:
    """A form's column: what it is for, the last try's error, its fields, the submit button and what follows."""
    return rx.vstack(
        *intro,
        _alert(error),
        *fields,
        rx.button(submit, type="submit", size="3", width="100%"),
        *after,
        spacing="4",
        width="100%",
    )


def _form_card(
    *intro: rx.Component,
    error: rx.Var,
    fields: Sequence[rx.Component],
    submit: str,
    action: str,
    token: rx.Var,
    icon: str = "calendar-heart",
) -> rx.Component:
    """A page of a link (invite, reset, verify): its form, posted by the browser with the link's token; the page
    it leads to starts with a new client (nothing of this one's state is kept)."""
    hidden_token = rx.el.input(type="hidden", name="token", value=token)
    return _card(
        native_form(
            _form_body(*intro, error=error, fields=[*fields, hidden_token], submit=submit),
            action=action,
            forget_client=True,
        ),
        icon=icon,
    )


CHOOSING_TIP = (
    " characters. A few unrelated words make a password that is easy to remember and hard to guess; "
    "there are no other rules, but very common passwords are refused."
)


def _password_field(label: str) -> rx.Component:
    return _text_field(
        label,
        "password",
        rx.text(
            "At least ",
            LinkState.min_length,
            CHOOSING_TIP,
            id="password-hint",
            size="1",
            color_scheme="gray",
        ),
        type="password",
        required=True,
        min_length=LinkState.min_length,
        max_length=1024,
        auto_complete="new-password",
        auto_focus=True,
        aria_describedby="password-hint form-error",
        aria_invalid=rx.cond(LinkState.error != "", "true", "false"),
    )


def _expired(what_to_do: rx.Component) -> rx.Component:
    return _card(
        _heading("This link has expired or was already used", id="link-invalid"),
        what_to_do,
        rx.hstack(
            rx.link("Sign in", href="/login", size="2"),
            rx.text("·", size="2", color_scheme="gray"),
            rx.link("Forgot your password?", href="/forgot", size="2"),
            spacing="2",
            wrap="wrap",
        ),
        icon="link-2-off",
    )


def _terms_text(terms_href: rx.Var, privacy_href: rx.Var) -> rx.Component:
    return rx.text(
        "Before you continue, read the practice's ",
        rx.link("terms of use", href=terms_href, is_external=True, underline="always"),
        " and ",
        rx.link("privacy notice", href=privacy_href, is_external=True, underline="always"),
        " (they open in a new tab).",
        size="2",
    )


@rx.page(route="/invite/[invite_token]", title=f"Set your password · {APP_NAME}", on_load=LinkState.load_invite)
def invite() -> rx.Component:
    return rx.cond(
        ~LinkState.checked,
        _loading(),
        rx.cond(
            LinkState.valid,
            _form_card(
                _heading("Welcome to ", LinkState.practice),
                rx.text(
                    "Hello ",
                    LinkState.first_name,
                    ". Choose a password for ",
                    rx.text.strong(LinkState.email),
                    ": you will sign in with this e-mail address and password.",
                    size="2",
                ),
                error=LinkState.error,
                fields=[
                    _password_field("Choose a password"),
                    _terms_text(LinkState.terms_href, LinkState.privacy_href),
                    rx.el.label(
                        rx.hstack(
                            rx.el.input(
                                type="checkbox",
                                id="accept-terms",
                                name="accept_terms",
                                value="yes",
                                required=True,
                                style={"width": "18px", "height": "18px", "margin_top": "2px"},
                            ),
                            rx.text("I accept the terms of use and the privacy notice.", size="2"),
                            spacing="2",
                            align="start",
                        ),
                        html_for="accept-terms",
                    ),
                ],
                submit="Set password and continue",
                action="/auth/invite",
                token=LinkState.token,
            ),
            _expired(
                rx.text(
                    "Invitation links work once, for ",
                    LinkState.invite_valid_for,
                    ". If you have not set your password yet, ask your clinic to send you a new invitation. "
                    "If you already did, sign in with it.",
                    size="2",
                ),
            ),
        ),
    )


@rx.page(route="/reset/[reset_token]", title=f"Choose a new password · {APP_NAME}", on_load=LinkState.load_reset)
def reset() -> rx.Component:
    return rx.cond(
        ~LinkState.checked,
        _loading(),
        rx.cond(
            LinkState.valid,
            _form_card(
                _heading("Choose a new password"),
                rx.text(
                    "For ",
                    rx.text.strong(LinkState.email),
                    " at ",
                    LinkState.practice,
                    ". Every device signed in to your account will be signed out.",
                    size="2",
                ),
                error=LinkState.error,
                fields=[_password_field("New password")],
                submit="Save new password",
                action="/auth/reset",
                token=LinkState.token,
                icon="key-round",
            ),
            _expired(
                rx.text(
                    "Password reset links work once, for ",
                    LinkState.reset_valid_for,
                    ", and only the newest one works. Ask for a new one with “Forgot your password?” below; "
                    "if you already chose a new password, sign in with it.",
                    size="2",
                ),
            ),
        ),
    )


@rx.page(route="/forgot", title=f"Forgot your password · {APP_NAME}")
def forgot() -> rx.Component:
    return _card(
        _heading("Forgot your password?"),
        rx.cond(
            ForgotState.sent,
            rx.vstack(
                rx.callout(ForgotState.sent_text, icon="mail-check", color_scheme="green", role="status", width="100%"),
                rx.text(
                    "The link works for ",
                    ForgotState.valid_for,
                    ". Nothing arrived? Check the address you sign in with, or ask your clinic.",
                    size="2",
                    color_scheme="gray",
                ),
                rx.link("Back to sign in", href="/login", size="2"),
                spacing="3",
                width="100%",
            ),
            native_form(
                _form_body(
                    rx.text(
                        "Enter the e-mail address you sign in with. We will send a link to choose a new password.",
                        size="2",
                    ),
                    error=ForgotState.error,
                    fields=[
                        _text_field(
                            "Email",
                            "email",
                            type="email",
                            required=True,
                            max_length=320,
                            auto_complete="username",
                            auto_focus=True,
                        ),
                    ],
                    submit="Send me a link",
                    after=[rx.link("Back to sign in", href="/login", size="2")],
                ),
                action="/auth/forgot",
            ),
        ),
        icon="key-round",
    )


# -- self-registration ---------------------------------------------------------------------------------------------

R = RegisterState


def _register_field(label: str, name: str, *hints: str, **props: Any) -> rx.Component:
    ident = f"register-{name}"
    message = R.errors.get(name, "")
    return _text_field(
        label, name, field_error(ident, message), ident=ident, **props, **error_attrs(ident, message, *hints)
    )


def _language_select() -> rx.Component:
    ident = "register-locale"
    message = R.errors.get("locale", "")
    return rx.vstack(
        field_label("Language of our messages to you", ident),
        rx.el.select(
            rx.el.option("English", value="en"),
            rx.el.option("Español", value="es"),
            id=ident,
            name="locale",
            default_value="en",
            style={
                "width": "100%",
                "height": "40px",
                "padding": "0 10px",
                "border_radius": "6px",
                "border": f"1px solid {rx.color('gray', 7)}",
                "background": rx.color("gray", 1),
                "color": rx.color("gray", 12),
                "font_size": "16px",
            },
            **error_attrs(ident, message),
        ),
        field_error(ident, message),
        spacing="1",
        width="100%",
    )


def _terms_checkbox() -> rx.Component:
    ident = "register-accept_terms"
    message = R.errors.get("accept_terms", "")
    return rx.vstack(
        _terms_text(R.terms_href, R.privacy_href),
        rx.el.label(
            rx.hstack(
                rx.el.input(
                    type="checkbox",
                    id=ident,
                    name="accept_terms",
                    value="yes",
                    required=True,
                    style={"width": "18px", "height": "18px", "margin_top": "2px", "flex_shrink": "0"},
                    **error_attrs(ident, message),
                ),
                rx.text("I accept the terms of use and the privacy notice.", size="2"),
                spacing="2",
                align="start",
            ),
            html_for=ident,
        ),
        field_error(ident, message),
        spacing="2",
        width="100%",
    )


def _register_form() -> rx.Component:
    return rx.form(
        _form_body(
            _heading("Create your account"),
            rx.text(
                "New patients of ",
                rx.text.strong(R.practice),
                ": create an account to book appointments and join waitlists online. We will send a link to your "
                "e-mail address to confirm it; your account exists once you open it.",
                size="2",
            ),
            error=R.form_error,
            fields=[
                _register_field("Full name", "full_name", required=True, max_length=200, auto_complete="name"),
                _register_field(
                    "Email (you will sign in with it)",
                    "email",
                    type="email",
                    required=True,
                    max_length=320,
                    auto_complete="email",
                ),
                _register_field(
                    "Mobile number (optional)",
                    "phone",
                    "register-phone-hint",
                    type="tel",
                    max_length=40,
                    auto_complete="tel",
                    placeholder="+1 555 010 0199",
                ),
                rx.text(
                    "With the country code. We use it for appointment reminders by text if you choose them.",
                    id="register-phone-hint",
                    size="1",
                    color_scheme="gray",
                    margin_top="-8px",
                ),
                _language_select(),
                _register_field(
                    "Choose a password",
                    "password",
                    "register-password-hint",
                    type="password",
                    required=True,
                    min_length=R.min_length,
                    max_length=1024,
                    auto_complete="new-password",
                ),
                rx.text(
                    "At least ",
                    R.min_length,
                    CHOOSING_TIP,
                    id="register-password-hint",
                    size="1",
                    color_scheme="gray",
                    margin_top="-8px",
                ),
                _terms_checkbox(),
            ],
            submit="Create account",
            after=[
                rx.text(
                    "Already have an account? ",
                    rx.link("Sign in", href=R.login_href, underline="always"),
                    size="2",
                ),
            ],
        ),
        on_submit=R.submit,
        reset_on_submit=False,
        key=R.form_key.to_string(),
        width="100%",
    )


def _register_sent() -> rx.Component:
    return rx.vstack(
        _heading("Check your e-mail"),
        rx.callout(R.sent_text, icon="mail-check", color_scheme="green", role="status", width="100%"),
        rx.text(
            "The link works once, for ",
            R.valid_for,
            ". You can close this page.",
            size="2",
            color_scheme="gray",
        ),
        rx.link("Go to sign in", href=R.login_href, size="2"),
        spacing="3",
        width="100%",
    )


def _register_closed() -> rx.Component:
    return rx.vstack(
        _heading(
            rx.cond(R.found, "Online registration is not open", "We could not find that practice"),
            id="registration-closed",
        ),
        rx.text(
            rx.cond(
                R.found,
                R.practice + " does not take online registrations. Ask the practice to send you an invitation.",
                "Check the address your practice gave you, or ask the practice to send you an invitation.",
            ),
            size="2",
        ),
        rx.hstack(
            rx.link("Sign in", href=R.login_href, size="2"),
            rx.text("·", size="2", color_scheme="gray", aria_hidden="true"),
            rx.link("Forgot your password?", href="/forgot", size="2"),
            spacing="2",
            wrap="wrap",
        ),
        spacing="3",
        width="100%",
    )


@rx.page(route="/register/[practice]", title=f"Create your account · {APP_NAME}", on_load=R.load)
def register() -> rx.Component:
    return rx.cond(
        ~R.checked,
        _loading(),
        _card(
            rx.cond(R.open, rx.cond(R.sent, _register_sent(), _register_form()), _register_closed()),
            icon="user-plus",
        ),
    )


V = VerifyState


@rx.page(route="/verify/[verify_token]", title=f"Confirm your e-mail · {APP_NAME}", on_load=V.load)
def verify() -> rx.Component:
    return rx.cond(
        ~V.checked,
        _loading(),
        rx.cond(
            V.valid,
            _form_card(
                _heading("Confirm your e-mail"),
                rx.text(
                    rx.cond(V.first_name != "", "Hello " + V.first_name + ". ", ""),
                    "To finish your account at ",
                    V.practice,
                    " for ",
                    rx.text.strong(V.email),
                    ", enter the password you chose when you registered.",
                    size="2",
                ),
                error=V.error,
                fields=[
                    _text_field(
                        "Your password",
                        "password",
                        type="password",
                        required=True,
                        max_length=1024,
                        auto_complete="current-password",
                        auto_focus=True,
                        aria_describedby="form-error",
                        aria_invalid=rx.cond(V.error != "", "true", "false"),
                    ),
                ],
                submit="Confirm and sign in",
                action="/auth/register/verify",
                token=V.token,
                icon="mail-check",
            ),
            _expired(
                rx.text(
                    "Confirmation links work once, for ",
                    V.valid_for,
                    ", and only the newest one works. If you have not confirmed yet, register again for a new "
                    "link; if you already did, sign in.",
                    size="2",
                ),
            ),
        ),
    )
