"""The doctor's schedule: one day as a timeline with attendance and cancellation, or a week at a glance."""

from __future__ import annotations

import reflex as rx

from portal.components.fields import field_label
from portal.components.shell import APP_NAME, empty_state, page_header, shell
from portal.state.live import LiveProvider, live_refresh
from portal.state.schedule import DayColumn, ScheduleState
from portal.state.session import SessionState


def status_badge(row: rx.Var, size: str = "2") -> rx.Component:
    color = rx.match(
        row["status_key"],
        ("booked", "teal"),
        ("held", "amber"),
        ("completed", "green"),
        ("no_show", "red"),
        "gray",
    )
    return rx.badge(row["status"], color_scheme=color, variant="soft", size=size)


# --- the toolbar -------------------------------------------------------------------------------------


def _toolbar() -> rx.Component:
    return rx.hstack(
        rx.segmented_control.root(
            rx.segmented_control.item("Day", value="day"),
            rx.segmented_control.item("Week", value="week"),
            value=ScheduleState.view,
            on_change=ScheduleState.set_view,
            aria_label="View",
        ),
        rx.hstack(
            rx.icon_button(
                rx.icon("chevron-left", size=18),
                variant="soft",
                color_scheme="gray",
                on_click=ScheduleState.previous,
                aria_label=rx.cond(ScheduleState.view == "week", "Previous week", "Previous day"),
                title=rx.cond(ScheduleState.view == "week", "Previous week", "Previous day"),
            ),
            rx.button(
                "Today",
                variant=rx.cond(ScheduleState.showing_today, "soft", "outline"),
                color_scheme="gray",
                on_click=ScheduleState.go_today,
            ),
            rx.icon_button(
                rx.icon("chevron-right", size=18),
                variant="soft",
                color_scheme="gray",
                on_click=ScheduleState.next,
                aria_label=rx.cond(ScheduleState.view == "week", "Next week", "Next day"),
                title=rx.cond(ScheduleState.view == "week", "Next week", "Next day"),
            ),
            spacing="2",
            align="center",
        ),
        rx.input(
            type="date",
            value=ScheduleState.anchor,
            on_change=ScheduleState.go_to,
            aria_label="Go to date",
            width="auto",
        ),
        spacing="3",
        align="center",
        wrap="wrap",
        width="100%",
    )


def _date_heading() -> rx.Component:
    return rx.vstack(
        rx.hstack(
            rx.heading(ScheduleState.heading, size="5", as_="h2"),
            rx.cond(
                (ScheduleState.view == "day") & ScheduleState.showing_today,
                rx.badge("Today", color_scheme="teal", variant="solid"),
            ),
            align="center",
            spacing="3",
        ),
        rx.text(
            ScheduleState.zone_caption,
            ". Each time is shown in its clinic's zone.",
            size="2",
            color_scheme="gray",
        ),
        spacing="1",
        width="100%",
    )


# --- day view ----------------------------------------------------------------------------------------


def _actions(row: rx.Var) -> rx.Component:
    status = row["status_key"]
    return rx.hstack(
        rx.cond(
            row["can_attend"] == "1",
            rx.match(
                status,
                (
                    "completed",
                    rx.button(
                        "Mark no-show",
                        size="1",
                        variant="ghost",
                        color_scheme="gray",
                        on_click=ScheduleState.mark_no_show(row["id"]),
                    ),
                ),
                (
                    "no_show",
                    rx.button(
                        "Mark completed",
                        size="1",
                        variant="ghost",
                        color_scheme="gray",
                        on_click=ScheduleState.mark_completed(row["id"]),
                    ),
                ),
                rx.hstack(
                    rx.button(
                        rx.icon("check", size=14),
                        "Completed",
                        size="1",
                        variant="soft",
                        color_scheme="green",
                        on_click=ScheduleState.mark_completed(row["id"]),
                    ),
                    rx.button(
                        rx.icon("user-x", size=14),
                        "No-show",
                        size="1",
                        variant="soft",
                        color_scheme="red",
                        on_click=ScheduleState.mark_no_show(row["id"]),
                    ),
                    spacing="2",
                ),
            ),
        ),
        rx.cond(
            row["can_cancel"] == "1",
            rx.button(
                "Cancel",
                size="1",
                variant="soft",
                color_scheme="gray",
                on_click=ScheduleState.ask_cancel(row["id"], row["patient"] + ", " + row["time"]),
            ),
        ),
        spacing="2",
        wrap="wrap",
    )


def _timeline_item(row: rx.Var) -> rx.Component:
    held = row["status_key"] == "held"
    return rx.box(
        rx.hstack(
            rx.vstack(
                rx.text(row["time"], weight="bold", size="3", white_space="nowrap"),
                rx.text(row["modality"], size="1", color_scheme="gray"),
                spacing="1",
                min_width="150px",
            ),
            rx.vstack(
                rx.text(
                    row["patient"],
                    weight="medium",
                    size="3",
                    color=rx.cond(held, rx.color("gray", 11), rx.color("gray", 12)),
                    font_style=rx.cond(held, "italic", "normal"),
                ),
                rx.hstack(
                    rx.icon("map-pin", size=14),
                    rx.text(row["clinic"], size="2"),
                    align="center",
                    spacing="1",
                    color=rx.color("gray", 11),
                ),
                spacing="1",
                min_width="160px",
            ),
            rx.spacer(),
            rx.hstack(status_badge(row), _actions(row), align="center", spacing="3", wrap="wrap"),
            align="center",
            spacing="4",
            wrap="wrap",
            width="100%",
        ),
        padding="14px 16px",
        border_left=rx.match(
            row["status_key"],
            ("held", f"4px dashed {rx.color('amber', 8)}"),
            ("completed", f"4px solid {rx.color('green', 8)}"),
            ("no_show", f"4px solid {rx.color('red', 8)}"),
            f"4px solid {rx.color('accent', 9)}",
        ),
        border_radius="8px",
        background=rx.cond(held, rx.color("amber", 2), rx.color("gray", 1)),
        box_shadow=f"0 0 0 1px {rx.color('gray', 5)}",
        opacity=rx.cond((row["past"] == "1") & (row["can_attend"] != "1"), "0.7", "1"),
        width="100%",
        role="listitem",
        aria_label=row["time"] + " " + row["patient"],
    )


def _day_view() -> rx.Component:
    return rx.cond(
        ScheduleState.day_rows.length() > 0,
        rx.vstack(
            rx.foreach(ScheduleState.day_rows, _timeline_item),
            spacing="3",
            width="100%",
            role="list",
            aria_label="Appointments",
        ),
        rx.card(empty_state("coffee", "Nothing scheduled on this day."), width="100%"),
    )


# --- week view ---------------------------------------------------------------------------------------


def _chip(row: rx.Var) -> rx.Component:
    held = row["status_key"] == "held"
    return rx.box(
        rx.text(row["short_time"], size="1", weight="bold"),
        rx.text(row["patient"], size="1", overflow="hidden", text_overflow="ellipsis", white_space="nowrap"),
        rx.cond(held, rx.fragment(), rx.text(row["status"], size="1", color=rx.color("gray", 11))),
        padding="6px 8px",
        border_radius="6px",
        border=rx.cond(held, f"1px dashed {rx.color('amber', 8)}", f"1px solid {rx.color('accent', 6)}"),
        background=rx.cond(
            held,
            rx.color("amber", 3),
            rx.match(
                row["status_key"],
                ("completed", rx.color("green", 3)),
                ("no_show", rx.color("red", 3)),
                rx.color("accent", 3),
            ),
        ),
        width="100%",
        title=row["time"] + " · " + row["patient"] + " · " + row["clinic"] + " · " + row["status"],
        class_name="schedule-chip",
    )


def _column(day: DayColumn) -> rx.Component:
    return rx.vstack(
        rx.button(
            rx.text(day.weekday, weight="bold", size="2"),
            rx.text(day.date, size="2"),
            variant=rx.cond(day.is_today, "solid", "ghost"),
            color_scheme=rx.cond(day.is_today, "teal", "gray"),
            on_click=ScheduleState.open_day(day.key),
            width="100%",
            title="Open this day",
            aria_label="Open " + day.weekday + " " + day.date,
        ),
        rx.cond(
            day.chips.length() > 0,
            rx.vstack(rx.foreach(day.chips, _chip), spacing="2", width="100%"),
            rx.text("—", size="1", color_scheme="gray", align="center", width="100%"),
        ),
        spacing="2",
        padding="8px",
        border_radius="8px",
        background=rx.cond(day.is_today, rx.color("accent", 2), rx.color("gray", 2)),
        min_height=["auto", "auto", "200px"],
        width="100%",
        min_width="0",
        role="group",
        aria_label=day.weekday + " " + day.date,
        class_name="week-column",
    )


def _week_view() -> rx.Component:
    return rx.grid(
        rx.foreach(ScheduleState.week, _column),
        columns=rx.breakpoints(initial="1", sm="2", md="7"),
        spacing="2",
        width="100%",
    )


# --- cancellation ------------------------------------------------------------------------------------


def _cancel_dialog() -> rx.Component:
    return rx.alert_dialog.root(
        rx.alert_dialog.content(
            rx.alert_dialog.title("Cancel this appointment?"),
            rx.alert_dialog.description(ScheduleState.cancel_label, size="2", margin_bottom="12px"),
            rx.vstack(
                field_label("Reason (optional, kept on record)", "cancel-reason"),
                rx.text_area(
                    id="cancel-reason",
                    value=ScheduleState.cancel_reason,
                    on_change=ScheduleState.set_cancel_reason,
                    force_notify_on_blur=True,
                    max_length=500,
                    placeholder="e.g. clinician unwell",
                    width="100%",
                ),
                rx.cond(
                    ScheduleState.cancel_error != "",
                    rx.callout(ScheduleState.cancel_error, icon="triangle-alert", color_scheme="red", role="alert"),
                ),
                spacing="2",
                width="100%",
            ),
            rx.hstack(
                rx.button("Keep it", variant="soft", color_scheme="gray", on_click=ScheduleState.keep_appointment),
                rx.button("Cancel appointment", color_scheme="red", on_click=ScheduleState.confirm_cancel),
                justify="end",
                spacing="3",
                margin_top="16px",
            ),
            max_width="460px",
        ),
        open=ScheduleState.cancel_id != "",
    )


@rx.page(
    route="/doctor/schedule",
    title=f"Schedule · {APP_NAME}",
    on_load=[SessionState.guard("doctor"), LiveProvider.link, ScheduleState.load],
)
def doctor_schedule() -> rx.Component:
    return shell(
        "doctor",
        live_refresh(ScheduleState.live_update, LiveProvider),
        page_header("Schedule", "Your appointments by day or by week"),
        _toolbar(),
        _date_heading(),
        rx.cond(
            ScheduleState.loaded,
            rx.cond(ScheduleState.view == "week", _week_view(), _day_view()),
            rx.center(rx.spinner(size="3"), padding="40px", width="100%"),
        ),
        _cancel_dialog(),
    )
