"""The Insights page: how cancelled slots are refilled, how waitlist offers fare, no-shows and late cancellations,
week by week, per clinic and per provider, and the outbox's dead letters. Every chart has the same numbers in a
table below it (the charts are pictures of the tables, labelled as such)."""

from __future__ import annotations

import reflex as rx

from portal.components import charts
from portal.components import responsive as stack
from portal.components.button_link import button_link
from portal.components.fields import field_label, labelled_select
from portal.components.shell import APP_NAME, empty_state, page_header, shell
from portal.state.insights import ATTENDANCE, RATES, REFILLS, SPEED
from portal.state.insights import InsightsState as S
from portal.state.session import SessionState

COLUMNS = (
    ("Cancellations", "cancellations"),
    ("Filled", "filled"),
    ("Fill rate", "fill_rate"),
    ("Median time to fill", "median"),
    ("Offers", "offers"),
    ("Accepted", "acceptance"),
    ("Offers per fill", "offers_per_fill"),
    ("No-shows", "no_shows"),
    ("Late cancellations", "late"),
)


def _date_filter(label: str, ident: str, value: rx.Var, on_change: rx.EventHandler) -> rx.Component:
    return rx.vstack(
        field_label(label, ident),
        rx.input(type="date", id=ident, value=value, on_change=on_change, width="170px"),
        spacing="1",
    )


def _filters() -> rx.Component:
    return rx.hstack(
        labelled_select("Clinic", "in-clinic", S.clinic_filter_options, S.clinic_filter, S.set_clinic_filter),
        labelled_select("Provider", "in-provider", S.provider_options, S.provider_filter, S.set_provider_filter),
        _date_filter("From", "in-start", S.start_day, S.set_start_day),
        _date_filter("To", "in-end", S.end_day, S.set_end_day),
        rx.button("Last 12 weeks", variant="ghost", color_scheme="gray", on_click=S.clear_filters),
        align="end",
        spacing="3",
        wrap="wrap",
        width="100%",
    )


def _summary_card(item: rx.Var) -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.text(item["label"], size="2", color_scheme="gray"),
            rx.heading(item["value"], size="6"),
            rx.text(item["detail"], size="1", color_scheme="gray"),
            spacing="1",
        ),
        width="100%",
        class_name="insights-figure",
    )


def _chart(title: str, description: str, drawing: rx.Component) -> rx.Component:
    """A chart as a labelled picture: its description says what it shows and where the numbers are."""
    return rx.card(
        rx.vstack(
            rx.heading(title, size="3", as_="h3"),
            rx.box(
                drawing,
                role="img",
                aria_label=f"Chart: {description} Every number is in the table “By week” below.",
                width="100%",
            ),
            spacing="2",
            width="100%",
        ),
        width="100%",
    )


def _charts() -> rx.Component:
    # Inline SVG drawn from the server's geometry (portal/components/charts.py): no chart library in the bundle.
    return rx.grid(
        _chart(
            "Cancelled slots and fills",
            "cancelled slots per week, how many were filled again and how many of those from the waitlist.",
            charts.chart("bar", S.refill_chart, list(REFILLS),
                         [rx.color("gray", 10), rx.color("accent", 10), rx.color("grass", 11)]),
        ),
        _chart(
            "Fill rate and offer acceptance (%)",
            "per week, the share of cancelled slots filled again and the share of answered offers accepted.",
            charts.chart("line", S.rate_chart, list(RATES), [rx.color("accent", 10), rx.color("grass", 11)]),
        ),
        _chart(
            "Time to fill and offers per fill",
            "per week, median hours from a cancellation to the new booking, and offers made per accepted offer.",
            charts.chart("line", S.speed_chart, list(SPEED), [rx.color("accent", 10), rx.color("amber", 11)]),
        ),
        _chart(
            "No-shows and late cancellations",
            "per week, appointments the patient did not come to, and cancellations inside the cancellation window.",
            charts.chart("bar", S.attendance_chart, list(ATTENDANCE), [rx.color("tomato", 10), rx.color("amber", 11)]),
        ),
        columns=rx.breakpoints(initial="1", lg="2"),
        spacing="4",
        width="100%",
    )  # fmt: skip


def _figures_row(row: rx.Var) -> rx.Component:
    return stack.row(
        stack.title_cell(rx.text(row["name"], weight="medium")),
        *[stack.cell(label, row[key]) for label, key in COLUMNS],
    )


def _figures_table(title: str, first: str, rows: rx.Var, ident: str) -> rx.Component:
    return rx.vstack(
        rx.heading(title, size="4", as_="h2", id=ident),
        rx.table.root(
            rx.el.caption(title, class_name="sr-only"),  # the table's name (Radix puts aria-* on its wrapper)
            rx.table.header(
                rx.table.row(*[rx.table.column_header_cell(h) for h in (first, *(label for label, _ in COLUMNS))])
            ),
            rx.table.body(rx.foreach(rows, _figures_row)),
            variant="surface",
            width="100%",
            class_name=stack.STACK_ON_PHONE,
        ),
        width="100%",
        spacing="3",
    )


def _dead_row(row: rx.Var) -> rx.Component:
    return stack.row(
        stack.cell("Created", rx.text(row["when"], size="2", white_space="nowrap")),
        stack.title_cell(rx.text(row["what"], weight="medium")),
        stack.cell("Channel", row["channel"]),
        stack.cell("Attempts", row["attempts"]),
        stack.cell("Last error", rx.text(row["error"], size="2", color_scheme="gray")),
        data_dead_letter=row["id"],
    )


def _dead_letters() -> rx.Component:
    return rx.vstack(
        rx.hstack(
            rx.heading("Dead letters", size="4", as_="h2", id="in-dead"),
            rx.badge(S.dead_total, color_scheme=rx.cond(S.dead_total > 0, "red", "gray"), variant="soft"),
            rx.spacer(),
            button_link(rx.icon("send", size=14), "Open the outbox", href="/admin/outbox", variant="soft"),
            align="center",
            width="100%",
            wrap="wrap",
        ),
        rx.text(
            "Messages the outbox gave up on (any date, whatever the filters). Send them again from the outbox.",
            size="2",
            color_scheme="gray",
        ),
        rx.cond(
            S.dead_letters.length() > 0,
            rx.table.root(
                rx.el.caption("Dead letters", class_name="sr-only"),
                rx.table.header(
                    rx.table.row(
                        *[
                            rx.table.column_header_cell(h)
                            for h in ("Created", "Message", "Channel", "Attempts", "Last error")
                        ]
                    )
                ),
                rx.table.body(rx.foreach(S.dead_letters, _dead_row)),
                variant="surface",
                width="100%",
                class_name=stack.STACK_ON_PHONE,
            ),
            rx.card(
                empty_state("circle-check", "No dead letters: every message was delivered or is on its way."),
                width="100%",
            ),
        ),
        width="100%",
        spacing="3",
    )


@rx.page(
    route="/admin/insights",
    title=f"Insights · {APP_NAME}",
    on_load=[SessionState.guard("admin"), S.load],
)
def admin_insights() -> rx.Component:
    return shell(
        "admin",
        page_header("Insights", "How cancelled slots are filled again, offers, no-shows and dead letters"),
        _filters(),
        rx.cond(S.load_error != "", rx.callout(S.load_error, icon="triangle-alert", color_scheme="red", role="alert")),
        rx.cond(
            S.loaded,
            rx.vstack(
                rx.text(S.range_label, size="2", color_scheme="gray", class_name="insights-range"),
                rx.grid(
                    rx.foreach(S.summary, _summary_card),
                    columns=rx.breakpoints(initial="1", sm="2", lg="3"),
                    spacing="4",
                    width="100%",
                ),
                _charts(),
                _figures_table("By week", "Week", S.week_rows, "in-weeks"),
                _figures_table("By clinic", "Clinic", S.clinic_rows, "in-clinics"),
                _figures_table("By provider", "Provider", S.provider_rows, "in-providers"),
                _dead_letters(),
                width="100%",
                spacing="5",
            ),
            rx.center(rx.spinner(size="3"), padding="40px", width="100%"),
        ),
    )
