"""The e-mail unsubscribe link: no sign-in; the signed token names the patient and the practice."""

from __future__ import annotations

import reflex as rx

from portal.components.shell import APP_NAME
from portal.state.notifications import UnsubscribeState as S


def _card(*children: rx.Component) -> rx.Component:
    return rx.center(
        rx.card(
            rx.vstack(
                rx.hstack(
                    rx.icon("calendar-heart", size=24, color=rx.color("accent", 9)),
                    rx.heading(APP_NAME, size="5"),
                    align="center",
                    spacing="2",
                ),
                *children,
                spacing="4",
                width="100%",
            ),
            width="100%",
            max_width="480px",
            padding="24px",
        ),
        min_height="80vh",
        padding="16px",
    )


@rx.page(route="/unsubscribe/[unsubscribe_token]", title=f"Unsubscribe · {APP_NAME}", on_load=S.load)
def unsubscribe() -> rx.Component:
    return rx.cond(
        ~S.checked,
        rx.center(rx.spinner(size="3"), height="60vh"),
        rx.cond(
            ~S.valid,
            _card(
                rx.heading("This link does not work", size="4", as_="h1"),
                rx.text("It may be incomplete. Sign in and open Messages to choose how we reach you.", size="2"),
                rx.link("Sign in", href="/login"),
            ),
            rx.cond(
                S.done != "",
                _card(
                    rx.heading("You are unsubscribed", size="4", as_="h1"),
                    rx.text(S.done, size="2", role="status"),
                    rx.text(
                        "You can turn messages back on at any time: sign in and open Messages.",
                        size="2",
                        color_scheme="gray",
                    ),
                    rx.link("Sign in", href="/login"),
                ),
                _card(
                    rx.heading("Stop messages from ", S.practice, size="4", as_="h1"),
                    rx.text(
                        "Without messages you will not hear about waitlist offers until you check the app.",
                        size="2",
                        color_scheme="gray",
                    ),
                    rx.vstack(
                        rx.button("Stop e-mails", size="3", width="100%", on_click=S.stop(False)),
                        rx.button(
                            "Stop all messages (e-mail, SMS and WhatsApp)",
                            size="3",
                            width="100%",
                            variant="soft",
                            color_scheme="red",
                            on_click=S.stop(True),
                        ),
                        spacing="2",
                        width="100%",
                    ),
                ),
            ),
        ),
    )
