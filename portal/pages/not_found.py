"""The page for an address that does not exist: in the app's look, with a way home."""

from __future__ import annotations

import reflex as rx

from portal.components.button_link import button_link
from portal.components.notice_page import APP_NAME, notice_card
from portal.state.not_found import NotFoundState as S


@rx.page(route="404", title=f"Page not found · {APP_NAME}")
def not_found() -> rx.Component:
    return notice_card(
        rx.heading("Page not found", size="5", as_="h1"),
        rx.text(
            "There is no page at this address. The link may be old or mistyped.",
            size="2",
        ),
        # One way on, in one control: a signed-in person's own home, anyone else the sign-in page. Read on mount:
        # the 404 page answers every unknown address, so it has no on_load of its own.
        rx.box(
            rx.cond(
                S.checked,
                rx.cond(
                    S.signed_in,
                    button_link(rx.icon("house", size=16), "Go to your home", href=S.home_path, size="3"),
                    button_link(rx.icon("log-in", size=16), "Sign in", href="/login", size="3"),
                ),
            ),
            on_mount=S.load,
            min_height="40px",
        ),
        label="Page not found",
    )
