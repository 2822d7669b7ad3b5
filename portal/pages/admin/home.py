"""The admin overview: figures per clinic, filtered by the shared clinic selector."""

from __future__ import annotations

import reflex as rx

from portal.components import responsive as stack
from portal.components.clinic_selector import clinic_selector
from portal.components.shell import APP_NAME, page_header, shell, stat_card
from portal.state.admin import AdminState
from portal.state.admin_overview import AdminOverviewState
from portal.state.live import LiveTenant, live_refresh
from portal.state.session import SessionState


def _row(row: rx.Var) -> rx.Component:
    return stack.row(
        stack.title_cell(
            rx.hstack(
                rx.text(row["name"], weight="medium"),
                rx.cond(row["archived"] == "1", rx.badge("Archived", color_scheme="gray")),
                spacing="2",
            )
        ),
        stack.cell("Time zone", row["timezone"]),
        stack.cell("Providers", row["providers"]),
        stack.cell("Patients", row["patients"]),
        stack.cell("Upcoming", row["upcoming"]),
        stack.cell("Waiting", row["waiting"]),
    )


@rx.page(
    route="/admin",
    title=f"Overview · {APP_NAME}",
    on_load=[SessionState.guard("admin"), LiveTenant.link, AdminOverviewState.live_mark, AdminState.load],
)
def admin_home() -> rx.Component:
    return shell(
        "admin",
        live_refresh(AdminOverviewState.live_update, LiveTenant),
        page_header("Practice overview", SessionState.practice_name, clinic_selector()),
        rx.grid(
            stat_card("Providers", AdminState.total_providers, "stethoscope"),
            stat_card("Patients", AdminState.total_patients, "users"),
            stat_card("Upcoming appointments", AdminState.total_upcoming, "calendar-check"),
            stat_card("On waitlists", AdminState.total_waiting, "list-ordered"),
            columns=rx.breakpoints(initial="1", sm="2", lg="4"),
            spacing="4",
            width="100%",
        ),
        rx.vstack(
            rx.heading("Clinics", size="4"),
            rx.table.root(
                rx.table.header(
                    rx.table.row(
                        *[
                            rx.table.column_header_cell(h)
                            for h in ("Clinic", "Time zone", "Providers", "Patients", "Upcoming", "Waiting")
                        ]
                    )
                ),
                rx.table.body(rx.foreach(AdminState.visible_overview, _row)),
                variant="surface",
                width="100%",
                class_name=stack.STACK_ON_PHONE,
            ),
            width="100%",
            spacing="3",
        ),
    )
