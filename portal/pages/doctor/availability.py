"""The doctor's availability: weekly hours edited as a table and saved at once, and time off."""

from __future__ import annotations

import reflex as rx

from portal.components.fields import error_attrs, field_error, field_label
from portal.components.shell import APP_NAME, empty_state, page_header, shell
from portal.state.availability import AvailabilityState
from portal.state.session import SessionState

WEEKDAY_NAMES = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def _row_label(what: str, index: rx.Var) -> rx.Var:
    return f"{what}, row " + (index + 1).to_string()


def _select(what: str, index: rx.Var, field: str, value: rx.Var, options: rx.Component, **props) -> rx.Component:
    return rx.select.root(
        rx.select.trigger(aria_label=_row_label(what, index), width="100%", **props),
        rx.select.content(options),
        value=value,
        on_change=lambda v: AvailabilityState.set_rule_field(index, field, v),
    )


def _input(what: str, index: rx.Var, field: str, value: rx.Var, **props) -> rx.Component:
    return rx.input(
        value=value,
        on_change=lambda v: AvailabilityState.set_rule_field(index, field, v),
        aria_label=_row_label(what, index),
        # Send the last edit as the field loses focus, so a click on "Save hours" never outruns it.
        force_notify_on_blur=True,
        force_notify_by_enter=True,
        **props,
    )


# One row per rule: eight columns on wide screens (a table), labelled fields two or four abreast below that.
WIDE = 4  # index of the 80em breakpoint in Reflex's responsive lists
COLUMNS = [
    "repeat(2, minmax(0, 1fr))",
    "repeat(4, minmax(0, 1fr))",
    "repeat(4, minmax(0, 1fr))",
    "repeat(4, minmax(0, 1fr))",
    "minmax(0, 1.1fr) minmax(0, 1.6fr) 112px 112px 84px 84px minmax(0, 1.1fr) 36px",
]
HEADERS = ("Day", "Clinic", "Start", "End", "Session (min)", "Buffer (min)", "Modality", "")


def _narrow(display: str = "block") -> list[str]:
    return [display] * WIDE + ["none"]


def _wide(display: str = "block") -> list[str]:
    return ["none"] * WIDE + [display]


def _cell(label: str, control: rx.Component, *extra: rx.Component) -> rx.Component:
    return rx.vstack(
        rx.text(label, size="1", weight="medium", color=rx.color("gray", 11), display=_narrow()),
        control,
        *extra,
        spacing="1",
        width="100%",
        min_width="0",
    )


def _rule_row(row: rx.Var, index: rx.Var) -> rx.Component:
    return rx.grid(
        _cell(
            "Day",
            _select(
                "Weekday",
                index,
                "weekday",
                row["weekday"],
                rx.fragment(*[rx.select.item(name, value=str(i)) for i, name in enumerate(WEEKDAY_NAMES)]),
            ),
        ),
        _cell(
            "Clinic",
            _select(
                "Clinic",
                index,
                "clinic_id",
                row["clinic_id"],
                rx.foreach(AvailabilityState.clinics, lambda c: rx.select.item(c["name"], value=c["id"])),
            ),
            rx.text(row["zone"], size="1", color_scheme="gray"),
        ),
        _cell("Start", _input("Start", index, "start", row["start"], type="time", width="100%", required=True)),
        _cell("End", _input("End", index, "end", row["end"], type="time", width="100%", required=True)),
        _cell(
            "Session (min)",
            _input("Session minutes", index, "session", row["session"], type="number", min=10, step=5, width="100%"),
        ),
        _cell(
            "Buffer (min)",
            _input("Buffer minutes", index, "buffer", row["buffer"], type="number", min=0, step=5, width="100%"),
        ),
        _cell(
            "Modality",
            _select(
                "Modality",
                index,
                "modality",
                row["modality"],
                rx.foreach(AvailabilityState.modalities, lambda m: rx.select.item(m["label"], value=m["value"])),
            ),
        ),
        rx.flex(
            rx.button(
                rx.icon("trash-2", size=16),
                rx.text("Remove", display=_narrow("inline")),
                variant="ghost",
                color_scheme="red",
                on_click=AvailabilityState.remove_rule(index),
                aria_label=_row_label("Remove", index),
                title="Remove this row",
            ),
            justify="end",
            align_items=["flex-end"] * WIDE + ["flex-start"],
            height="100%",
            padding_bottom=["6px"] * WIDE + ["0"],
            padding_top=["0"] * WIDE + ["8px"],
        ),
        grid_template_columns=COLUMNS,
        gap=["10px"] * WIDE + ["12px"],
        align_items="start",
        padding="12px",
        border_top=f"1px solid {rx.color('gray', 4)}",
        background=rx.cond(row["error"] == "1", rx.color("red", 3), "transparent"),
        width="100%",
        role="group",
        aria_label=_row_label("Rule", index),
        aria_invalid=rx.cond(row["error"] == "1", "true", "false"),
    )


def _rules_header() -> rx.Component:
    return rx.grid(
        *[rx.text(h, size="2", weight="bold") for h in HEADERS],
        grid_template_columns=COLUMNS,
        gap="12px",
        padding="10px 12px",
        background=rx.color("gray", 2),
        display=_wide("grid"),
        width="100%",
    )


def _hours() -> rx.Component:
    return rx.vstack(
        rx.hstack(
            rx.vstack(
                rx.heading("Weekly hours", size="4", as_="h2"),
                rx.text(
                    "Wall-clock times in each clinic's own time zone. Patients can book sessions inside these hours.",
                    size="2",
                    color_scheme="gray",
                ),
                spacing="1",
            ),
            rx.spacer(),
            rx.cond(AvailabilityState.rules_dirty, rx.badge("Unsaved changes", color_scheme="amber", size="2")),
            width="100%",
            align="end",
            wrap="wrap",
            spacing="3",
        ),
        rx.cond(
            AvailabilityState.rules_error != "",
            rx.callout(
                AvailabilityState.rules_error,
                icon="triangle-alert",
                color_scheme="red",
                role="alert",
                width="100%",
                id="hours-error",
            ),
        ),
        rx.box(
            _rules_header(),
            rx.foreach(AvailabilityState.rule_rows, _rule_row),
            rx.cond(
                AvailabilityState.rules.length() == 0,
                rx.box(
                    rx.callout(
                        "No weekly hours: patients cannot book you until you add some.",
                        icon="info",
                        color_scheme="amber",
                    ),
                    padding="12px",
                ),
            ),
            border=f"1px solid {rx.color('gray', 5)}",
            border_radius="8px",
            overflow="hidden",
            width="100%",
            role="region",
            aria_label="Weekly hours",
        ),
        rx.hstack(
            rx.button(rx.icon("plus", size=16), "Add row", variant="soft", on_click=AvailabilityState.add_rule),
            rx.spacer(),
            rx.cond(
                AvailabilityState.rules_dirty,
                rx.button(
                    "Discard changes", variant="soft", color_scheme="gray", on_click=AvailabilityState.discard_rules
                ),
            ),
            rx.button(rx.icon("save", size=16), "Save hours", on_click=AvailabilityState.save_rules),
            width="100%",
            spacing="3",
            wrap="wrap",
        ),
        spacing="3",
        width="100%",
    )


# --- time off ----------------------------------------------------------------------------------------


def _to_error(field: str) -> rx.Component:
    """The field's error (#err-time-off-<field>), announced; "form" for one that belongs to no field."""
    return field_error(f"time-off-{field}", AvailabilityState.to_errors.get(field, ""))


def _to_field(label: str, field: str, **props) -> rx.Component:
    ident = f"time-off-{field}"
    return rx.vstack(
        field_label(label, ident),
        rx.input(
            id=ident,
            name=field,
            value=AvailabilityState.to_form.get(field, ""),
            on_change=lambda v: AvailabilityState.set_time_off_field(field, v),
            force_notify_on_blur=True,
            width="100%",
            **props,
            **error_attrs(ident, AvailabilityState.to_errors.get(field, "")),
        ),
        _to_error(field),
        spacing="1",
        width="100%",
    )


def _time_off_form() -> rx.Component:
    return rx.card(
        rx.form(
            rx.vstack(
                rx.heading("Add time off", size="3", as_="h3"),
                rx.text(
                    "Dates and times are in ",
                    rx.text.strong(AvailabilityState.zone_label),
                    ", your main clinic's zone.",
                    size="2",
                    color_scheme="gray",
                ),
                _to_error("form"),
                rx.grid(
                    _to_field("Start date", "start_date", type="date"),
                    _to_field("Start time", "start_time", type="time"),
                    _to_field("End date", "end_date", type="date"),
                    _to_field("End time", "end_time", type="time"),
                    columns=rx.breakpoints(initial="2", md="4"),
                    spacing="3",
                    width="100%",
                ),
                _to_field("Reason (optional)", "reason", max_length=200, placeholder="e.g. conference"),
                rx.hstack(
                    rx.button(rx.icon("calendar-off", size=16), "Add time off", type="submit"),
                    justify="end",
                    width="100%",
                ),
                spacing="3",
                width="100%",
            ),
            on_submit=AvailabilityState.submit_time_off,
            reset_on_submit=False,
        ),
        width="100%",
    )


def _session_line(session: rx.Var) -> rx.Component:
    return rx.hstack(
        rx.badge(session["status"], color_scheme=rx.cond(session["status"] == "Held", "gray", "teal")),
        rx.text(session["when"], size="2", weight="medium"),
        rx.text(session["patient"], size="2"),
        rx.text(session["clinic"], " · ", session["modality"], size="1", color_scheme="gray"),
        spacing="2",
        align="center",
        wrap="wrap",
        role="listitem",
    )


def _kept_under(row: rx.Var) -> rx.Component:
    """Sessions the doctor chose to keep in this time off: still booked, so none is forgotten."""
    return rx.foreach(
        AvailabilityState.kept_sessions,
        lambda k: rx.cond(
            k["time_off_id"] == row["id"],
            rx.hstack(
                rx.icon("triangle-alert", size=14, color=rx.color("amber", 10)),
                rx.text("Still booked during this time off: ", k["when"], " · ", k["patient"], size="2"),
                spacing="2",
                align="center",
                class_name="kept-session",
            ),
        ),
    )


def _conflict_dialog() -> rx.Component:
    S = AvailabilityState
    n = S.conflicts.length()
    return rx.alert_dialog.root(
        rx.alert_dialog.content(
            rx.alert_dialog.title("This time off covers ", n, rx.cond(n == 1, " booked session", " booked sessions")),
            rx.alert_dialog.description(
                "Cancel them and the patients are told at once (and the time is not offered to anyone else), "
                "or keep them: they stay booked and are listed under the time off.",
                size="2",
            ),
            rx.vstack(
                rx.foreach(S.conflicts, _session_line),
                spacing="2",
                margin_top="12px",
                padding="10px 12px",
                border_radius="8px",
                background=rx.color("gray", 2),
                width="100%",
                role="list",
                aria_label="Sessions in the time off",
            ),
            rx.cond(
                S.conflict_error != "",
                rx.callout(
                    S.conflict_error, icon="triangle-alert", color_scheme="red", margin_top="12px", role="alert"
                ),
            ),
            rx.hstack(
                rx.button("Back", variant="soft", color_scheme="gray", on_click=S.close_conflicts),
                rx.spacer(),
                rx.button(
                    "Keep them",
                    variant="soft",
                    on_click=S.resolve_time_off("keep"),
                    disabled=S.conflict_busy,
                ),
                rx.button(
                    "Cancel them and notify the patients",
                    color_scheme="red",
                    on_click=S.resolve_time_off("cancel"),
                    disabled=S.conflict_busy,
                ),
                spacing="3",
                margin_top="16px",
                wrap="wrap",
                width="100%",
            ),
            max_width="560px",
        ),
        open=S.conflict_open,
    )


def _time_off_row(row: rx.Var) -> rx.Component:
    return rx.hstack(
        rx.icon("calendar-off", size=18, color=rx.color("gray", 10)),
        rx.vstack(
            rx.hstack(
                rx.text(row["when"], weight="medium", size="2"),
                rx.cond(row["current"] == "1", rx.badge("Now", color_scheme="amber")),
                spacing="2",
                align="center",
                wrap="wrap",
            ),
            rx.cond(row["reason"] != "", rx.text(row["reason"], size="2", color_scheme="gray")),
            _kept_under(row),
            spacing="1",
        ),
        rx.spacer(),
        rx.button(
            "Remove",
            size="1",
            variant="soft",
            color_scheme="red",
            on_click=AvailabilityState.delete_time_off(row["id"]),
            aria_label="Remove time off " + row["when"],
        ),
        align="center",
        spacing="3",
        padding="12px 14px",
        border_radius="8px",
        box_shadow=f"0 0 0 1px {rx.color('gray', 5)}",
        width="100%",
        role="listitem",
    )


def _time_off() -> rx.Component:
    return rx.vstack(
        rx.heading("Time off", size="4", as_="h2"),
        rx.text(
            "No one can book you while you are away. Shown in ",
            AvailabilityState.zone_label,
            ".",
            size="2",
            color_scheme="gray",
        ),
        rx.cond(
            AvailabilityState.time_off.length() > 0,
            rx.vstack(
                rx.foreach(AvailabilityState.time_off, _time_off_row),
                spacing="2",
                width="100%",
                role="list",
                aria_label="Upcoming time off",
            ),
            rx.card(empty_state("plane", "No time off planned."), width="100%"),
        ),
        _time_off_form(),
        _conflict_dialog(),
        spacing="3",
        width="100%",
    )


@rx.page(
    route="/doctor/availability",
    title=f"Availability · {APP_NAME}",
    on_load=[SessionState.guard("doctor"), AvailabilityState.load],
)
def doctor_availability() -> rx.Component:
    return shell(
        "doctor",
        page_header("Availability", "Your weekly hours and time off"),
        rx.cond(
            AvailabilityState.loaded,
            rx.vstack(_hours(), rx.separator(size="4"), _time_off(), spacing="6", width="100%"),
            rx.center(rx.spinner(size="3"), padding="40px", width="100%"),
        ),
    )
