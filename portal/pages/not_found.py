"""The page for an address that does not exist: in the app's look, with a way home."""

from __future__ import annotations

import reflex as rx

from portal.components.notice_page import APP_NAME, notice_card


@rx.page(route="404", title=f"Page not found · {APP_NAME}")
def not_found() -> rx.Component:
    return notice_card(
        rx.heading("Page not found", size="5", as_="h1"),
        rx.text(
            "There is no page at this address. The link may be old or mistyped.",
            size="2",
        ),
        rx.hstack(
            # "/" sends a signed-in person to their own home and anyone else to the sign-in page.
            rx.link(rx.button(rx.icon("house", size=16), "Go to your home", size="3"), href="/"),
            rx.link("Sign in", href="/login", size="2"),
            align="center",
            spacing="4",
            wrap="wrap",
        ),
        label="Page not found",
    )
