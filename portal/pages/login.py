"""Sign in. The form posts to /auth/login, which sets the HttpOnly session cookie."""

from __future__ import annotations

from typing import Any

import reflex as rx

from portal.components.fields import field_label
from portal.components.native_form import native_form
from portal.components.shell import APP_NAME
from portal.state.client import FORGET_CLIENT_TOKEN_JS
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


@rx.page(route="/login", title=f"Sign in · {APP_NAME}", on_load=LoginState.load)
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
                    spacing="4",
                    width="100%",
                ),
                action="/auth/login",
                forget_client=True,
            ),
            ForgetClient.create(),
            size="4",
            width="100%",
            max_width="420px",
        ),
        min_height="100vh",
        padding="16px",
        background=rx.color("accent", 2),
    )
