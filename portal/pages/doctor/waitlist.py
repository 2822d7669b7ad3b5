"""The doctor's live waitlist console: ranked entries with the reasons, promote, invite and remove."""

from __future__ import annotations

import reflex as rx

from portal.components.countdown import countdown
from portal.components.fields import field_label
from portal.components.shell import APP_NAME, empty_state, page_header, shell
from portal.state.live import LiveProvider, live_refresh
from portal.state.session import SessionState
from portal.state.waitlist_console import EntryRow, WaitlistConsoleState

S = WaitlistConsoleState


def urgency_badge(row: EntryRow) -> rx.Component:
    return rx.badge(row.urgency, color_scheme=row.urgency_color, variant="soft", size="2")


def entry_status(row: EntryRow) -> rx.Component:
    """Status, the live offer with its slot and a ticking expiry, or the optimistic "sending" note."""
    return rx.cond(
        row.pending != "",
        rx.hstack(rx.spinner(size="1"), rx.text(row.pending, size="2", color_scheme="amber"), align="center"),
        rx.cond(
            row.offer_until_iso != "",
            rx.vstack(
                rx.badge(rx.icon("send", size=12), "Offer pending", color_scheme="amber", variant="soft"),
                rx.text(row.offer_slot, size="1", color_scheme="gray"),
                rx.hstack(
                    rx.text("Expires ", row.offer_until, " · ", size="1", color_scheme="gray"),
                    countdown(row.offer_until_iso, font_size="var(--font-size-1)", font_weight="600"),
                    spacing="1",
                    align="center",
                ),
                spacing="1",
            ),
            rx.badge(
                row.status,
                color_scheme=rx.match(
                    row.status_key, ("waiting", "teal"), ("booked", "green"), ("offered", "amber"), "gray"
                ),
                variant="soft",
            ),
        ),
    )


def _actions(row: EntryRow) -> rx.Component:
    busy = row.pending != ""
    offered = row.status_key == "offered"
    return rx.cond(
        row.active,
        rx.hstack(
            rx.button(
                rx.icon("zap", size=14),
                "Promote",
                size="1",
                variant="soft",
                disabled=busy | offered,
                on_click=S.promote(row.id),
                title="Offer the best free slot now",
                aria_label="Promote " + row.patient,
            ),
            rx.button(
                rx.icon("calendar-plus", size=14),
                "Invite",
                size="1",
                variant="soft",
                color_scheme="gray",
                disabled=busy | offered,
                on_click=S.open_invite(row.id),
                aria_label="Invite " + row.patient,
            ),
            rx.button(
                rx.icon("x", size=14),
                "Remove",
                size="1",
                variant="soft",
                color_scheme="red",
                disabled=busy,
                on_click=S.ask_remove(row.id, row.patient),
                aria_label="Remove " + row.patient,
            ),
            spacing="2",
            wrap="wrap",
        ),
    )


def _entry_card(row: EntryRow) -> rx.Component:
    return rx.card(
        rx.hstack(
            rx.center(
                rx.text(rx.cond(row.position != "", "#" + row.position, "–"), weight="bold", size="4"),
                min_width="44px",
                height="44px",
                border_radius="10px",
                background=rx.color("accent", 3),
                color=rx.color("accent", 11),
                title="Position in the ranking",
            ),
            rx.vstack(
                rx.hstack(
                    rx.text(row.patient, weight="bold", size="4"),
                    urgency_badge(row),
                    align="center",
                    spacing="2",
                    wrap="wrap",
                ),
                rx.hstack(
                    rx.icon("map-pin", size=14),
                    rx.text(row.clinic, " · ", row.provider, size="2"),
                    rx.icon("hourglass", size=14, margin_left="8px"),
                    rx.text("Waiting ", row.waiting, " (since ", row.since, ")", size="2"),
                    align="center",
                    spacing="1",
                    color=rx.color("gray", 11),
                    wrap="wrap",
                ),
                rx.hstack(
                    rx.icon("clock", size=14),
                    rx.text("Prefers ", row.windows, " · ", row.zone, size="2"),
                    align="center",
                    spacing="1",
                    color=rx.color("gray", 11),
                ),
                rx.cond(
                    row.estimated != "",
                    rx.hstack(
                        rx.icon("calendar-clock", size=14),
                        rx.text("Estimated wait: ", row.estimated, size="2", class_name="estimated-wait"),
                        align="center",
                        spacing="1",
                        color=rx.color("gray", 11),
                    ),
                ),
                rx.cond(row.reason != "", rx.text("“", row.reason, "”", size="2", font_style="italic")),
                rx.cond(
                    row.reasons.length() > 0,
                    rx.box(
                        rx.text("Why next", size="1", weight="bold", color_scheme="gray", text_transform="uppercase"),
                        rx.el.ul(
                            rx.foreach(row.reasons, lambda r: rx.el.li(rx.text(r, size="2"))),
                            padding_left="18px",
                            margin="2px 0 0 0",
                        ),
                        padding="8px 10px",
                        border_radius="8px",
                        background=rx.color("gray", 2),
                        width="100%",
                        class_name="why-next",
                    ),
                ),
                spacing="2",
                width="100%",
                min_width="240px",
                flex="1",
            ),
            rx.vstack(entry_status(row), _actions(row), align="end", spacing="3", min_width="220px"),
            spacing="4",
            align="start",
            width="100%",
            wrap="wrap",
        ),
        width="100%",
        role="listitem",
        aria_label=row.patient,
        data_entry_id=row.id,
        opacity=rx.cond(row.pending != "", "0.75", "1"),
    )


def _filters() -> rx.Component:
    return rx.hstack(
        rx.vstack(
            field_label("Clinic", "console-clinic"),
            rx.select.root(
                rx.select.trigger(id="console-clinic", aria_label="Clinic", min_width="200px"),
                rx.select.content(rx.foreach(S.clinic_options, lambda c: rx.select.item(c["name"], value=c["id"]))),
                value=S.clinic_filter,
                on_change=S.set_clinic_filter,
            ),
            spacing="1",
        ),
        rx.vstack(
            field_label("Status", "console-status"),
            rx.select.root(
                rx.select.trigger(id="console-status", aria_label="Status", min_width="220px"),
                rx.select.content(rx.foreach(S.status_options, lambda c: rx.select.item(c["name"], value=c["id"]))),
                value=S.status_filter,
                on_change=S.set_status_filter,
            ),
            spacing="1",
        ),
        rx.spacer(),
        rx.hstack(
            rx.box(width="8px", height="8px", border_radius="50%", background=rx.color("green", 9)),
            rx.text("Live · ", S.count_label, size="2", color_scheme="gray"),
            align="center",
            spacing="2",
            title="Updates by itself when patients or colleagues act",
            data_last_event=LiveProvider.last_event,
        ),
        align="end",
        spacing="4",
        width="100%",
        wrap="wrap",
    )


def _invite_dialog() -> rx.Component:
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title("Invite ", S.invite_patient),
            rx.dialog.description(
                "Offer one of your free slots at ", S.invite_clinic, " in the next two weeks.", size="2"
            ),
            rx.cond(
                S.invite_reach != "",
                rx.hstack(
                    rx.icon("bell", size=14, color=rx.color("gray", 10), flex_shrink="0"),
                    rx.text(S.invite_reach, size="1", color_scheme="gray"),
                    align="center",
                    spacing="2",
                    margin_top="8px",
                ),
            ),
            rx.vstack(
                rx.cond(
                    S.invite_days.length() > 0,
                    rx.vstack(
                        rx.vstack(
                            field_label("Day", "invite-day"),
                            rx.select.root(
                                rx.select.trigger(id="invite-day", aria_label="Day", width="100%"),
                                rx.select.content(
                                    rx.foreach(S.invite_days, lambda d: rx.select.item(d["name"], value=d["id"]))
                                ),
                                value=S.invite_day,
                                on_change=S.set_invite_day,
                            ),
                            spacing="1",
                            width="100%",
                        ),
                        rx.vstack(
                            rx.text("Time", size="2", weight="medium"),
                            rx.radio_group.root(
                                rx.vstack(
                                    rx.foreach(
                                        S.invite_times,
                                        lambda t: rx.radio_group.item(t["label"], value=t["value"]),
                                    ),
                                    spacing="2",
                                ),
                                value=S.invite_start,
                                on_change=S.set_invite_start,
                                aria_label="Time",
                            ),
                            spacing="1",
                            width="100%",
                            max_height="260px",
                            overflow_y="auto",
                        ),
                        spacing="3",
                        width="100%",
                    ),
                ),
                rx.cond(
                    S.invite_error != "",
                    rx.callout(S.invite_error, icon="triangle-alert", color_scheme="red", role="alert", width="100%"),
                ),
                spacing="3",
                width="100%",
                margin_top="12px",
            ),
            rx.hstack(
                rx.button("Cancel", variant="soft", color_scheme="gray", on_click=S.close_invite),
                rx.button(
                    "Send invitation",
                    on_click=S.confirm_invite,
                    loading=S.invite_loading,
                    disabled=(S.invite_start == "") | S.invite_loading,
                ),
                justify="end",
                spacing="3",
                margin_top="16px",
            ),
            max_width="480px",
        ),
        open=S.invite_id != "",
        on_open_change=lambda _open: S.close_invite(),
    )


def _remove_dialog() -> rx.Component:
    return rx.alert_dialog.root(
        rx.alert_dialog.content(
            rx.alert_dialog.title("Remove ", S.remove_patient, " from the waitlist?"),
            rx.alert_dialog.description(
                "The entry is closed as removed by staff and the patient is told. This cannot be undone.", size="2"
            ),
            rx.hstack(
                rx.button("Keep", variant="soft", color_scheme="gray", on_click=S.keep_entry),
                rx.button("Remove", color_scheme="red", on_click=S.confirm_remove),
                justify="end",
                spacing="3",
                margin_top="16px",
            ),
        ),
        open=S.remove_id != "",
    )


@rx.page(
    route="/doctor/waitlist",
    title=f"Waitlist · {APP_NAME}",
    on_load=[SessionState.guard("doctor"), LiveProvider.link, WaitlistConsoleState.load],
)
def doctor_waitlist() -> rx.Component:
    return shell(
        "doctor",
        live_refresh(S.live_update, LiveProvider),
        page_header("Waitlist", "Who is waiting for you, best match first, and why"),
        _filters(),
        rx.cond(
            S.load_error != "",
            rx.callout(S.load_error, icon="triangle-alert", color_scheme="red", role="alert"),
        ),
        rx.cond(
            S.loaded,
            rx.cond(
                S.rows.length() > 0,
                rx.vstack(
                    rx.foreach(S.rows, _entry_card), spacing="3", width="100%", role="list", aria_label="Waitlist"
                ),
                rx.card(empty_state("inbox", "Nobody is waiting here."), width="100%"),
            ),
            rx.center(rx.spinner(size="3"), padding="40px", width="100%"),
        ),
        _invite_dialog(),
        _remove_dialog(),
    )
