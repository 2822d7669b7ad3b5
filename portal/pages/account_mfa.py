"""Two-step sign-in for the signed-in person: set it up (QR code and the secret as text), confirm with a first
code, keep the recovery codes (shown once), see the status, replace the recovery codes."""

from __future__ import annotations

import reflex as rx

from portal.components.fields import field_label
from portal.components.shell import APP_NAME
from portal.state.mfa import MfaAccountState as S


def _code_form(label: str, button: str, handler: rx.EventHandler, ident: str) -> rx.Component:
    return rx.form(
        rx.vstack(
            field_label(label, ident),
            rx.hstack(
                rx.input(
                    id=ident,
                    name="code",
                    required=True,
                    auto_complete="one-time-code",
                    input_mode="numeric",
                    max_length=24,
                    size="3",
                    width="180px",
                ),
                rx.button(button, type="submit", size="3"),
                spacing="2",
                align="center",
            ),
            rx.cond(S.code_error != "", rx.text(S.code_error, color_scheme="red", size="2", role="alert")),
            spacing="1",
            width="100%",
        ),
        on_submit=handler,
        reset_on_submit=True,
        width="100%",
    )


def _enrol() -> rx.Component:
    return rx.vstack(
        rx.cond(
            S.restricted,
            rx.callout(
                "Your role requires two-step sign-in. Set it up now to continue.",
                icon="shield-alert",
                color_scheme="amber",
                width="100%",
            ),
        ),
        rx.text(
            "1. Scan this QR code with an authenticator app (for example Google Authenticator, 1Password, Aegis).",
            size="2",
        ),
        rx.center(
            rx.image(src=S.qr, alt="QR code for your authenticator app", width="220px", height="220px", id="mfa-qr"),
            width="100%",
        ),
        rx.text("Or type this key into the app:", size="2"),
        rx.code(S.secret, id="mfa-secret", size="3", style={"letter_spacing": "0.08em", "word_break": "break-all"}),
        rx.text("2. Enter the 6-digit code the app shows to confirm.", size="2"),
        _code_form("Code from the app", "Confirm", S.confirm, "enrol-code"),
        spacing="3",
        width="100%",
    )


def _recovery_codes() -> rx.Component:
    return rx.vstack(
        rx.callout(
            "Two-step sign-in is on. Save these recovery codes somewhere safe: each one signs you in once if you lose "
            "your phone. They are shown only now.",
            icon="key-round",
            color_scheme="green",
            width="100%",
        ),
        rx.grid(
            rx.foreach(S.recovery_codes, lambda c: rx.code(c, size="3", class_name="recovery-code")),
            columns="2",
            spacing="2",
            width="100%",
            id="recovery-codes",
        ),
        rx.button("I have saved my recovery codes", on_click=S.done, size="3", width="100%"),
        spacing="3",
        width="100%",
    )


def _status() -> rx.Component:
    return rx.vstack(
        rx.cond(
            S.enrolled,
            rx.vstack(
                rx.hstack(
                    rx.badge("On", color_scheme="green", size="2"),
                    rx.text("Two-step sign-in is on since ", S.enabled_at, ".", size="2"),
                    align="center",
                ),
                rx.text(S.codes_left, " unused recovery codes left.", size="2", id="codes-left"),
                rx.separator(width="100%"),
                rx.text("New recovery codes (the old ones stop working):", size="2", weight="medium"),
                _code_form("Current code from the app", "Replace recovery codes", S.regenerate, "regen-code"),
                spacing="3",
                width="100%",
            ),
            rx.vstack(
                rx.hstack(
                    rx.badge("Off", color_scheme="gray", size="2"), rx.text("Two-step sign-in is off.", size="2")
                ),
                rx.text("Add a code from your phone to every sign-in.", size="2", color_scheme="gray"),
                rx.button("Set up two-step sign-in", on_click=S.start, size="3"),
                spacing="3",
                width="100%",
            ),
        ),
        rx.link("Back", href=S.home, size="2"),
        spacing="3",
        width="100%",
    )


@rx.page(route="/account/mfa", title=f"Two-step sign-in · {APP_NAME}", on_load=S.load)
def account_mfa() -> rx.Component:
    return rx.center(
        rx.card(
            rx.vstack(
                rx.hstack(
                    rx.icon("shield-check", size=26, color=rx.color("accent", 9)),
                    rx.heading("Two-step sign-in", size="6", as_="h1"),
                    align="center",
                    spacing="2",
                ),
                rx.cond(
                    ~S.checked,
                    rx.center(rx.spinner(size="3"), height="200px", width="100%"),
                    rx.cond(
                        S.recovery_codes.length() > 0,
                        _recovery_codes(),
                        rx.cond(S.enrolling, _enrol(), _status()),
                    ),
                ),
                spacing="4",
                width="100%",
            ),
            size="4",
            width="100%",
            max_width="520px",
        ),
        min_height="100vh",
        padding="16px",
        background=rx.color("accent", 2),
    )
