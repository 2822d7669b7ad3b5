"""The doctor home: today's schedule and the days ahead."""

from __future__ import annotations

import reflex as rx

from portal.components import responsive as stack
from portal.components.shell import APP_NAME, empty_state, page_header, shell, stat_card
from portal.state.doctor import DoctorHomeState
from portal.state.live import LiveProvider, live_refresh
from portal.state.session import SessionState


def _today_row(row: rx.Var) -> rx.Component:
    return stack.row(
        stack.cell("Time", rx.text(row["time"], weight="medium"), title=True),
        stack.cell("Patient", row["patient"]),
        stack.cell("Clinic", row["clinic"]),
        stack.cell("Modality", rx.badge(row["modality"], variant="soft")),
        # The session's own status (Completed, No-show, Held for an offer...), greyed once its time has passed.
        stack.cell("Status", rx.badge(row["status"], color_scheme=rx.cond(row["past"] == "1", "gray", "teal"))),
        opacity=rx.cond(row["past"] == "1", "0.6", "1"),
    )


def _later_row(row: rx.Var) -> rx.Component:
    return stack.row(
        stack.cell("Date", row["day"], title=True),
        stack.cell("Time", row["time"]),
        stack.cell("Patient", row["patient"]),
        stack.cell("Clinic", row["clinic"]),
        stack.cell("Modality", rx.badge(row["modality"], variant="soft")),
        stack.cell("Status", rx.badge(row["status"], color_scheme="teal")),
    )


def _table(headers: tuple[str, ...], rows: rx.Var, render) -> rx.Component:
    return rx.table.root(
        rx.table.header(rx.table.row(*[rx.table.column_header_cell(h) for h in headers])),
        rx.table.body(rx.foreach(rows, render)),
        variant="surface",
        width="100%",
        class_name=stack.STACK_ON_PHONE,
    )


@rx.page(
    route="/doctor",
    title=f"Today · {APP_NAME}",
    on_load=[SessionState.guard("doctor"), LiveProvider.link, DoctorHomeState.load],
)
def doctor_home() -> rx.Component:
    return shell(
        "doctor",
        live_refresh(DoctorHomeState.live_update, LiveProvider),
        page_header(SessionState.user_name, DoctorHomeState.today_label),
        rx.grid(
            stat_card("Sessions today", DoctorHomeState.today.length(), "calendar-check"),
            stat_card("Next 7 days", DoctorHomeState.week_count, "calendar-range"),
            stat_card("Waiting for you", DoctorHomeState.waiting_count, "users"),
            columns=rx.breakpoints(initial="1", sm="3"),
            spacing="4",
            width="100%",
        ),
        rx.vstack(
            rx.heading("Today's schedule", size="4"),
            rx.text("Times are shown in each clinic's own time zone.", size="2", color_scheme="gray"),
            rx.cond(
                DoctorHomeState.today.length() > 0,
                _table(("Time", "Patient", "Clinic", "Modality", "Status"), DoctorHomeState.today, _today_row),
                empty_state("coffee", "No sessions today."),
            ),
            width="100%",
            spacing="3",
        ),
        rx.vstack(
            rx.heading("Coming up", size="4"),
            rx.cond(
                DoctorHomeState.next_days.length() > 0,
                _table(
                    ("Date", "Time", "Patient", "Clinic", "Modality", "Status"), DoctorHomeState.next_days, _later_row
                ),
                empty_state("calendar", "Nothing booked in the next days."),
            ),
            width="100%",
            spacing="3",
        ),
    )
