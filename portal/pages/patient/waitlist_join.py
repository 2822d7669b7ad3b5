"""Join a waitlist: the online form comes with the waitlist release; until then, say so and name the clinics."""

from __future__ import annotations

import reflex as rx

from portal.components.shell import APP_NAME, loading, page_header, shell
from portal.state.booking import WaitlistJoinState as S
from portal.state.session import SessionState


def _clinic(c: rx.Var) -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.text(c["name"], weight="medium"),
            rx.cond(c["address"] != "", rx.text(c["address"], size="2", color_scheme="gray")),
            rx.cond(
                c["phone"] != "",
                rx.link(
                    rx.hstack(rx.icon("phone", size=14), rx.text(c["phone"], size="2"), align="center", spacing="1"),
                    href="tel:" + c["phone"].to(str).replace(" ", ""),
                ),
            ),
            spacing="1",
        ),
        width="100%",
    )


@rx.page(
    route="/patient/waitlist/join",
    title=f"Join a waitlist · {APP_NAME}",
    on_load=[SessionState.guard("patient"), S.load],
)
def waitlist_join() -> rx.Component:
    return shell(
        "patient",
        rx.link(
            rx.hstack(rx.icon("arrow-left", size=14), rx.text("Find care", size="2"), align="center", spacing="1"),
            href="/patient/find",
        ),
        page_header(
            "Join a waitlist",
            rx.cond(S.wanted_name != "", "You asked to wait for " + S.wanted_name, "When no time suits you yet"),
        ),
        rx.cond(
            ~S.loaded,
            loading(),
            rx.vstack(
                rx.card(
                    rx.vstack(
                        rx.hstack(
                            rx.icon("list-plus", size=22, color=rx.color("amber", 10)),
                            rx.heading("Joining online is coming in the next release", size="4", as_="h2"),
                            align="center",
                            spacing="2",
                        ),
                        rx.text(
                            "Soon you will be able to join here with the days and times that suit you. When a time "
                            "frees up, the patient it suits best will get an exclusive offer for a limited time, "
                            "to accept or decline right on this site.",
                            size="2",
                        ),
                        rx.text(
                            "You cannot join online yet, and nothing has been recorded from this page. To be added "
                            "to a waitlist today, call the clinic:",
                            size="2",
                            weight="medium",
                        ),
                        spacing="3",
                    ),
                    width="100%",
                ),
                rx.grid(
                    rx.foreach(S.wanted_clinics, _clinic),
                    columns=rx.breakpoints(initial="1", sm="2"),
                    spacing="3",
                    width="100%",
                ),
                rx.hstack(
                    rx.link(rx.button(rx.icon("search", size=16), "Back to Find care"), href="/patient/find"),
                    rx.link(
                        rx.button("My appointments", variant="soft", color_scheme="gray"),
                        href="/patient/appointments",
                    ),
                    spacing="3",
                    wrap="wrap",
                ),
                spacing="4",
                width="100%",
            ),
        ),
    )
