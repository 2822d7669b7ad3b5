"""The patient home: what is coming up, what has been, and where they wait."""

from __future__ import annotations

import reflex as rx

from portal.components.button_link import button_link
from portal.components.format import HISTORY_COLUMNS
from portal.components.shell import APP_NAME, empty_state, page_header, shell
from portal.i18n import t
from portal.state.live import LivePatient, live_refresh
from portal.state.patient import PatientHomeState
from portal.state.session import SessionState


def _appointment_row(row: rx.Var) -> rx.Component:
    return rx.card(
        rx.hstack(
            rx.vstack(
                rx.text(row["day"], weight="bold", size="3"),
                rx.text(row["time"], size="2", color_scheme="gray"),
                spacing="1",
                min_width="180px",
            ),
            rx.vstack(
                rx.text(row["provider"], weight="medium", size="3"),
                rx.hstack(
                    rx.icon("map-pin", size=14),
                    rx.text(row["clinic"], size="2"),
                    rx.badge(row["modality"], variant="soft"),
                    align="center",
                    spacing="2",
                    color=rx.color("gray", 11),
                ),
                spacing="1",
            ),
            rx.spacer(),
            rx.badge(row["status"], color_scheme="teal", size="2"),
            align="center",
            spacing="4",
            wrap="wrap",
            width="100%",
        ),
        width="100%",
    )


def _past_row(row: rx.Var) -> rx.Component:
    return rx.table.row(
        rx.table.cell(row["day"]),
        rx.table.cell(row["time"]),
        rx.table.cell(row["provider"]),
        rx.table.cell(row["clinic"]),
        rx.table.cell(rx.badge(row["status"], variant="soft", color_scheme="gray")),
    )


def _entry_row(row: rx.Var) -> rx.Component:
    return rx.card(
        rx.hstack(
            rx.vstack(
                rx.text(row["target"], weight="medium"),
                rx.text(row["clinic"], size="2", color_scheme="gray"),
                spacing="1",
            ),
            rx.vstack(
                rx.text(t("Preferred times"), size="1", color_scheme="gray"),
                rx.text(row["windows"], size="2"),
                spacing="1",
            ),
            rx.spacer(),
            rx.vstack(
                rx.badge(row["status"], color_scheme="amber", size="2"),
                rx.text(t("Since {day}", day=row["since"]), size="1", color_scheme="gray"),
                align="end",
                spacing="1",
            ),
            spacing="5",
            align="center",
            wrap="wrap",
            width="100%",
        ),
        width="100%",
    )


@rx.page(
    route="/patient",
    title=t("My care") + f" · {APP_NAME}",
    on_load=[SessionState.guard("patient"), LivePatient.link, PatientHomeState.live_mark, PatientHomeState.load],
)
def patient_home() -> rx.Component:
    return shell(
        "patient",
        live_refresh(PatientHomeState.live_update, LivePatient),
        page_header(
            t("Hello, {name}", name=SessionState.user_name),
            t("Your appointments and waitlist at {practice}", practice=SessionState.practice_name),
            button_link(rx.icon("search", size=16), t("Find a provider"), href="/patient/find", size="3"),
        ),
        rx.vstack(
            rx.heading(t("Upcoming appointments"), size="4"),
            rx.cond(
                PatientHomeState.upcoming.length() > 0,
                rx.vstack(rx.foreach(PatientHomeState.upcoming, _appointment_row), width="100%", spacing="2"),
                empty_state("calendar", t("You have no upcoming appointments.")),
            ),
            width="100%",
            spacing="3",
        ),
        rx.vstack(
            rx.hstack(
                rx.heading(t("On the waitlist"), size="4"),
                rx.link(t("My waitlist"), rx.icon("arrow-right", size=14), href="/patient/waitlist", size="2"),
                justify="between",
                align="center",
                width="100%",
            ),
            rx.cond(
                PatientHomeState.entries.length() > 0,
                rx.vstack(rx.foreach(PatientHomeState.entries, _entry_row), width="100%", spacing="2"),
                empty_state("list-checks", t("You are not on any waitlist.")),
            ),
            width="100%",
            spacing="3",
        ),
        rx.vstack(
            rx.heading(t("Past appointments"), size="4"),
            rx.cond(
                PatientHomeState.past.length() > 0,
                rx.table.root(
                    rx.table.header(rx.table.row(*[rx.table.column_header_cell(t(h)) for h in HISTORY_COLUMNS])),
                    rx.table.body(rx.foreach(PatientHomeState.past, _past_row)),
                    variant="surface",
                    width="100%",
                ),
                empty_state("history", t("No past appointments yet.")),
            ),
            width="100%",
            spacing="3",
        ),
    )
