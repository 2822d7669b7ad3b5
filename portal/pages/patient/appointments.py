"""My appointments: upcoming ones to cancel or move, and the history."""

from __future__ import annotations

import reflex as rx

from portal.components.button_link import button_link
from portal.components.fields import field_label
from portal.components.format import HISTORY_COLUMNS
from portal.components.shell import APP_NAME, empty_state, loading, page_header, shell
from portal.i18n import t
from portal.state.live import LivePatient, live_refresh
from portal.state.my_appointments import MyAppointmentsState as S
from portal.state.session import SessionState


def _upcoming_card(row: rx.Var) -> rx.Component:
    return rx.card(
        rx.flex(
            rx.vstack(
                rx.text(row["day"], weight="bold", size="3"),
                rx.text(row["time"], size="2"),
                rx.text(row["zone"], size="1", color_scheme="gray"),
                spacing="1",
                min_width="200px",
            ),
            rx.vstack(
                rx.text(row["provider"], weight="medium", size="3"),
                rx.hstack(
                    rx.icon("map-pin", size=14),
                    rx.text(row["clinic"], size="2"),
                    rx.badge(row["modality"], variant="soft"),
                    rx.cond(
                        row["series"] == "1",
                        rx.badge(rx.icon("repeat", size=12), t("Weekly series"), variant="soft", color_scheme="blue"),
                    ),
                    align="center",
                    spacing="2",
                    wrap="wrap",
                    color=rx.color("gray", 11),
                ),
                spacing="1",
                flex="1",
                min_width="220px",
            ),
            rx.hstack(
                rx.button(
                    rx.icon("calendar-sync", size=16),
                    t("Reschedule"),
                    variant="soft",
                    # Inside the window a move needs a call (the service refuses it too); the rule below says so.
                    disabled=row["late"] == "1",
                    on_click=S.start_reschedule(row["id"]),
                    aria_describedby="rule-" + row["id"].to(str),
                ),
                rx.button(
                    rx.icon("x", size=16),
                    t("Cancel"),
                    variant="soft",
                    color_scheme="red",
                    on_click=S.open_cancel(row["id"]),
                    aria_describedby="rule-" + row["id"].to(str),
                ),
                spacing="2",
                wrap="wrap",
            ),
            align="center",
            spacing="4",
            wrap="wrap",
            width="100%",
        ),
        # The cancellation window, said before the patient clicks (not only as an error after).
        rx.hstack(
            rx.icon("clock", size=14, flex_shrink="0", margin_top="3px", aria_hidden="true"),
            rx.text(row["rule"], size="1", id="rule-" + row["id"].to(str), class_name="change-rule"),
            spacing="2",
            align="start",
            margin_top="10px",
            color=rx.cond(row["late"] == "1", rx.color("amber", 11), rx.color("gray", 11)),
        ),
        width="100%",
        role="article",
        aria_label=row["day"] + ", " + row["time"],
    )


def _past_row(row: rx.Var) -> rx.Component:
    return rx.table.row(
        rx.table.cell(row["day"]),
        rx.table.cell(row["time"]),
        rx.table.cell(row["provider"]),
        rx.table.cell(row["clinic"]),
        rx.table.cell(rx.badge(row["status"], variant="soft", color_scheme=row["tone"])),
    )


def _past_item(row: rx.Var) -> rx.Component:
    """The history on a narrow screen: one compact line pair per appointment instead of a table."""
    return rx.hstack(
        rx.vstack(
            rx.text(row["day"], ", ", row["time"], size="2", weight="medium"),
            rx.text(row["provider"], " · ", row["clinic"], size="1", color_scheme="gray"),
            spacing="0",
        ),
        rx.spacer(),
        rx.badge(row["status"], variant="soft", color_scheme=row["tone"]),
        align="center",
        width="100%",
        padding="10px 12px",
        border_bottom=f"1px solid {rx.color('gray', 4)}",
    )


def _cancel_dialog() -> rx.Component:
    return rx.alert_dialog.root(
        rx.alert_dialog.content(
            rx.alert_dialog.title(t("Cancel this appointment?")),
            rx.alert_dialog.description(
                rx.text(rx.text.strong(S.cancel_when), " ", t("with {provider}.", provider=S.cancel_provider)),
                size="2",
            ),
            rx.vstack(
                rx.cond(
                    S.cancel_late_warning != "",
                    rx.callout(S.cancel_late_warning, icon="triangle-alert", color_scheme="amber", width="100%"),
                ),
                rx.cond(
                    S.cancel_in_series,
                    rx.text(
                        t(
                            "This appointment is part of a weekly series. Cancel just this one, or this one and every "
                            "later one of the series."
                        ),
                        size="2",
                        color_scheme="gray",
                    ),
                ),
                rx.vstack(
                    field_label(t("Reason (optional)"), "cancel-reason"),
                    rx.text_area(
                        id="cancel-reason",
                        value=S.cancel_reason,
                        on_change=S.set_cancel_reason,
                        max_length=500,
                        placeholder=t("Let the clinic know why, if you like"),
                        width="100%",
                    ),
                    spacing="1",
                    width="100%",
                ),
                rx.cond(
                    S.cancel_error != "",
                    rx.callout(S.cancel_error, icon="circle-alert", color_scheme="red", role="alert", width="100%"),
                ),
                rx.flex(
                    rx.alert_dialog.cancel(rx.button(t("Keep it"), variant="soft", color_scheme="gray")),
                    rx.cond(
                        S.cancel_in_series,
                        rx.fragment(
                            rx.button(
                                t("Cancel this and following"),
                                color_scheme="red",
                                variant="soft",
                                on_click=S.confirm_cancel("following"),
                                loading=S.cancel_busy,
                            ),
                            rx.button(
                                t("Cancel this one"),
                                color_scheme="red",
                                on_click=S.confirm_cancel("this"),
                                loading=S.cancel_busy,
                            ),
                        ),
                        rx.button(
                            t("Cancel appointment"),
                            color_scheme="red",
                            on_click=S.confirm_cancel("this"),
                            loading=S.cancel_busy,
                        ),
                    ),
                    justify="end",
                    spacing="3",
                    wrap="wrap",
                    width="100%",
                ),
                spacing="4",
                margin_top="16px",
                width="100%",
            ),
            max_width="520px",
        ),
        open=S.cancel_open,
        on_open_change=S.set_cancel_open,
    )


@rx.page(
    route="/patient/appointments",
    title=t("My appointments") + f" · {APP_NAME}",
    on_load=[SessionState.guard("patient"), LivePatient.link, S.load],
)
def my_appointments() -> rx.Component:
    return shell(
        "patient",
        live_refresh(S.live_update, LivePatient),
        page_header(
            t("My appointments"),
            t("Times are shown in each clinic's time zone"),
            button_link(rx.icon("search", size=16), t("Book a new appointment"), href="/patient/find"),
        ),
        rx.cond(
            S.page_error != "",
            rx.callout(S.page_error, icon="circle-alert", color_scheme="amber", role="alert", width="100%"),
        ),
        rx.cond(
            ~S.loaded,
            loading(),
            rx.vstack(
                rx.vstack(
                    rx.heading(t("Upcoming"), size="4", as_="h2"),
                    rx.cond(
                        S.upcoming.length() > 0,
                        rx.vstack(rx.foreach(S.upcoming, _upcoming_card), width="100%", spacing="2"),
                        rx.vstack(
                            empty_state("calendar", t("You have no upcoming appointments.")),
                            rx.link(t("Find a provider"), href="/patient/find"),
                            align="center",
                            width="100%",
                        ),
                    ),
                    width="100%",
                    spacing="3",
                    role="region",
                    aria_label=t("Upcoming"),
                ),
                rx.vstack(
                    rx.heading(t("Past and cancelled"), size="4", as_="h2"),
                    rx.cond(
                        S.past.length() > 0,
                        rx.fragment(
                            rx.box(
                                rx.table.root(
                                    rx.table.header(
                                        rx.table.row(*[rx.table.column_header_cell(t(h)) for h in HISTORY_COLUMNS])
                                    ),
                                    rx.table.body(rx.foreach(S.past, _past_row)),
                                    variant="surface",
                                    width="100%",
                                ),
                                width="100%",
                                display=["none", "none", "block"],
                            ),
                            rx.vstack(
                                rx.foreach(S.past, _past_item),
                                spacing="0",
                                width="100%",
                                display=["flex", "flex", "none"],
                                border=f"1px solid {rx.color('gray', 5)}",
                                border_radius="8px",
                            ),
                        ),
                        empty_state("history", t("No past appointments yet.")),
                    ),
                    width="100%",
                    spacing="3",
                    role="region",
                    aria_label=t("Past and cancelled"),
                ),
                spacing="6",
                width="100%",
            ),
        ),
        _cancel_dialog(),
    )
