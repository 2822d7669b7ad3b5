"""A provider's week: free times as buttons; a click holds the time and the dialog confirms it (or moves one)."""

from __future__ import annotations

import reflex as rx

from portal.components.button_link import button_link
from portal.components.fields import field_label
from portal.components.shell import APP_NAME, empty_state, loading, page_header, shell
from portal.i18n import t
from portal.state.booking import ClinicTab, SeriesRow, WeekDay, WeekSlot
from portal.state.booking import ProviderWeekState as S
from portal.state.live import LiveProvider, live_refresh
from portal.state.ratelimit import rate_limit_callout
from portal.state.session import SessionState


def _slot_face(slot: WeekSlot, with_label: bool) -> rx.Component:
    return rx.vstack(
        rx.hstack(
            rx.text(slot.time, weight="medium", size="2"),
            rx.cond(slot.telehealth, rx.icon("video", size=12)),
            align="center",
            spacing="1",
        ),
        rx.cond(with_label, rx.text(slot.label, size="1")),
        align="center",
        spacing="0",
    )


def _slot(slot: WeekSlot) -> rx.Component:
    common = {
        "min_height": "44px",
        "width": "100%",
        "custom_attrs": {"data-start": slot.start, "data-status": slot.status},
    }
    return rx.match(
        slot.status,
        (
            "free",
            rx.button(
                _slot_face(slot, False),
                on_click=S.pick_slot(slot.start),
                disabled=S.busy,
                variant="surface",
                height="auto",
                padding_y="6px",
                aria_label=slot.aria,
                **common,
            ),
        ),
        (
            "mine",
            rx.center(_slot_face(slot, True), **_own_style(), aria_label=slot.aria, role="note", **common),
        ),
        (
            "current",
            rx.center(_slot_face(slot, True), **_own_style(), aria_label=slot.aria, role="note", **common),
        ),
        (
            # Someone is booking it or it is held for an offer: not taken, and free again if they let it go.
            "held",
            rx.button(
                _slot_face(slot, True),
                disabled=True,
                variant="soft",
                height="auto",
                padding_y="6px",
                aria_label=slot.aria,
                title=t("Held for someone right now; it becomes free again if they do not book it"),
                # Amber even though disabled (Radix greys disabled buttons): held is not taken.
                background=rx.color("amber", 3),
                color=rx.color("amber", 11),
                border=f"1px dashed {rx.color('amber', 8)}",
                cursor="not-allowed",
                **common,
            ),
        ),
        rx.button(
            _slot_face(slot, True),
            disabled=True,
            variant="soft",
            color_scheme="gray",
            height="auto",
            padding_y="6px",
            aria_label=slot.aria,
            **common,
        ),
    )


def _own_style() -> dict:
    return {
        "padding_y": "6px",
        "border_radius": "var(--radius-2)",
        "background": rx.color("blue", 3),
        "color": rx.color("blue", 11),
        "border": f"1px dashed {rx.color('blue', 8)}",
    }


def _day(day: WeekDay) -> rx.Component:
    return rx.vstack(
        rx.vstack(
            rx.text(day.weekday, size="2", weight="bold", color=rx.cond(day.is_today, rx.color("teal", 11), "inherit")),
            rx.text(day.date, size="2", color_scheme="gray"),
            rx.cond(day.zone != "", rx.text(day.zone, size="1", color_scheme="gray"), rx.text("\u00a0", size="1")),
            spacing="0",
            align=rx.breakpoints(initial="start", md="center"),
            width="100%",
            padding_bottom="6px",
            border_bottom=f"2px solid {rx.color('gray', 4)}",
        ),
        rx.cond(
            day.slots.length() > 0,
            rx.box(
                rx.foreach(day.slots, _slot),
                display="grid",
                grid_template_columns="repeat(auto-fill, minmax(72px, 1fr))",
                gap="8px",
                width="100%",
            ),
            rx.text(t("No times"), size="1", color_scheme="gray", padding_y="8px"),
        ),
        spacing="2",
        width="100%",
        min_width="0",
        padding="8px",
        border_radius="8px",
        background=rx.cond(day.is_today, rx.color("teal", 2), "transparent"),
        role="group",
        aria_label=day.weekday + " " + day.date,
    )


def _legend() -> rx.Component:
    def item(color: str, text: str | rx.Var) -> rx.Component:
        return rx.hstack(
            rx.box(width="12px", height="12px", border_radius="3px", background=rx.color(color, 5)),
            rx.text(text, size="1", color_scheme="gray"),
            align="center",
            spacing="1",
        )

    return rx.flex(
        item("teal", t("Free")),
        item("amber", t("Held (may free up)")),
        item("gray", t("Unavailable")),
        item("blue", t("Yours")),
        rx.hstack(rx.icon("video", size=12), rx.text(t("Telehealth"), size="1", color_scheme="gray"), spacing="1"),
        wrap="wrap",
        spacing="4",
        align="center",
    )


def _week_nav() -> rx.Component:
    return rx.hstack(
        rx.icon_button(
            rx.icon("chevron-left"),
            on_click=S.prev_week,
            disabled=~S.can_prev,
            variant="soft",
            aria_label=t("Previous week"),
        ),
        rx.vstack(
            rx.heading(S.week_label, size="4", as_="h2", white_space="nowrap", id="week-label"),
            rx.text(S.zone_note, size="1", color_scheme="gray", text_align="center"),
            spacing="0",
            align="center",
            flex="1",
            min_width="0",
        ),
        rx.icon_button(
            rx.icon("chevron-right"),
            on_click=S.next_week,
            disabled=~S.can_next,
            variant="soft",
            aria_label=t("Next week"),
        ),
        align="center",
        spacing="3",
        width=rx.breakpoints(initial="100%", sm="auto"),
        max_width="460px",
    )


def _week() -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.flex(
                _week_nav(),
                rx.spacer(),
                rx.flex(
                    rx.cond(S.can_prev, rx.button(t("This week"), variant="ghost", size="1", on_click=S.this_week)),
                    _legend(),
                    align="center",
                    spacing="4",
                    wrap="wrap",
                ),
                direction=rx.breakpoints(initial="column", sm="row"),
                align=rx.breakpoints(initial="stretch", sm="center"),
                spacing="3",
                width="100%",
            ),
            rx.cond(
                S.alert != "",
                rx.callout(S.alert, icon="triangle-alert", color_scheme="red", role="alert", width="100%"),
            ),
            rate_limit_callout(S.rate_limited),
            _other_clinic_note(),
            rx.grid(
                rx.foreach(S.days, _day),
                columns=rx.breakpoints(initial="1", xs="2", sm="4", md="7"),
                spacing="2",
                width="100%",
            ),
            rx.cond(
                (S.free_count == 0) & S.is_reschedule,
                rx.callout(
                    rx.cond(
                        S.clinic_tabs.length() > 1,
                        t("No free times at this clinic this week. Try another week, or another clinic above."),
                        t("No free times this week. Try another week."),
                    ),
                    icon="calendar-x",
                    color_scheme="amber",
                    width="100%",
                ),
            ),
            rx.cond(
                (S.free_count == 0) & ~S.is_reschedule & S.provider_has_free,
                rx.callout(
                    rx.hstack(
                        rx.text(t("No free times this week. Try the next week, or join the waitlist.")),
                        rx.link(
                            t("Join waitlist"),
                            href="/patient/waitlist/join?provider_id=" + S.provider_ref,
                            weight="bold",
                        ),
                        spacing="2",
                        wrap="wrap",
                    ),
                    icon="calendar-x",
                    color_scheme="amber",
                    width="100%",
                ),
            ),
            spacing="4",
            width="100%",
        ),
        width="100%",
    )


def _detail(icon: str, text: rx.Var | str) -> rx.Component:
    return rx.hstack(
        rx.icon(icon, size=16, color=rx.color("gray", 10)), rx.text(text, size="2"), align="center", spacing="2"
    )


def _series_row(row: SeriesRow) -> rx.Component:
    return rx.hstack(
        rx.cond(
            row.ok,
            rx.icon("circle-check", size=16, color=rx.color("teal", 10), aria_label=t("Available")),
            rx.icon("circle-x", size=16, color=rx.color("red", 10), aria_label=t("Not available")),
        ),
        rx.text(row.when, size="2"),
        rx.cond(~row.ok, rx.text("— ", row.reason, size="2", color_scheme="red")),
        align="center",
        spacing="2",
        wrap="wrap",
        role="listitem",
    )


def _repeat_section() -> rx.Component:
    return rx.vstack(
        rx.el.label(
            rx.hstack(
                rx.checkbox(checked=S.repeat, on_change=S.set_repeat, id="repeat-weekly"),
                rx.text(t("Repeat weekly"), size="2", weight="medium"),
                align="center",
                spacing="2",
            ),
            html_for="repeat-weekly",
        ),
        rx.cond(
            S.repeat,
            rx.vstack(
                rx.hstack(
                    rx.vstack(
                        field_label(t("Every"), "series-every"),
                        rx.select.root(
                            rx.select.trigger(id="series-every", aria_label=t("Every")),
                            rx.select.content(
                                rx.select.item(t("Every week"), value="1"),
                                rx.select.item(t("Every 2 weeks"), value="2"),
                            ),
                            value=S.every_weeks,
                            on_change=S.set_every_weeks,
                        ),
                        spacing="1",
                    ),
                    rx.vstack(
                        field_label(t("Sessions"), "series-sessions"),
                        rx.select.root(
                            rx.select.trigger(id="series-sessions", aria_label=t("Sessions")),
                            rx.select.content(rx.foreach(S.series_sizes, lambda n: rx.select.item(n, value=n))),
                            value=S.sessions,
                            on_change=S.set_sessions,
                        ),
                        spacing="1",
                    ),
                    rx.button(t("Check dates"), variant="soft", on_click=S.check_dates, disabled=S.busy),
                    align="end",
                    spacing="3",
                    wrap="wrap",
                ),
                rx.cond(
                    S.series_checked,
                    rx.vstack(
                        rx.vstack(rx.foreach(S.series_preview, _series_row), spacing="1", role="list"),
                        rx.text(S.series_summary, size="2", color_scheme="gray"),
                        spacing="2",
                    ),
                ),
                spacing="3",
                width="100%",
            ),
        ),
        spacing="3",
        width="100%",
        padding="12px",
        border_radius="8px",
        background=rx.color("gray", 2),
    )


def _change_section() -> rx.Component:
    """What the move changes besides the time, and the patient's explicit yes to it."""
    return rx.cond(
        S.has_change,
        rx.callout.root(
            rx.callout.icon(rx.icon("triangle-alert")),
            rx.vstack(
                rx.text(t("This move changes your visit"), weight="bold", size="2"),
                rx.el.ul(
                    rx.foreach(S.change_rows, lambda row: rx.el.li(rx.text(row, size="2"))),
                    aria_label=t("Changes"),
                    style={"margin": "0", "padding_left": "1.2em"},
                ),
                rx.el.label(
                    rx.hstack(
                        rx.checkbox(checked=S.change_ack, on_change=S.set_change_ack, id="confirm-change"),
                        rx.text(
                            t(
                                "Yes, move my appointment to {clinic} ({modality})",
                                clinic=S.sel_clinic,
                                modality=S.sel_modality,
                            ),
                            size="2",
                        ),
                        align="center",
                        spacing="2",
                    ),
                    html_for="confirm-change",
                ),
                spacing="2",
            ),
            color_scheme="amber",
            role="group",
            aria_label=t("Change of clinic or visit type"),
            width="100%",
        ),
    )


def _confirm_step() -> rx.Component:
    return rx.vstack(
        rx.dialog.title(rx.cond(S.is_reschedule, t("Move appointment"), t("Confirm your appointment"))),
        rx.dialog.description(
            rx.cond(
                S.is_reschedule,
                rx.cond(
                    S.has_change,
                    t(
                        "This time is at another clinic or of another visit type. Your appointment moves only when "
                        "you confirm the change below; until then it stays as it is."
                    ),
                    t("Your appointment moves only when you confirm; until then it stays as it is."),
                ),
                rx.cond(
                    S.hold_until != "",
                    rx.text(t("We're holding this time for you until {time}.", time=S.hold_until)),
                    t("Confirm to book this time."),
                ),
            ),
            size="2",
        ),
        rx.vstack(
            _detail("user-round", S.provider_name),
            rx.cond(
                S.is_reschedule,
                _detail("calendar-x", t("From: {when} · {where}", when=S.reschedule_from, where=S.reschedule_where)),
            ),
            _detail("calendar-clock", rx.cond(S.is_reschedule, t("To: {when}", when=S.sel_when), S.sel_when)),
            _detail("globe", S.sel_zone),
            _detail("map-pin", S.sel_clinic),
            _detail(rx.cond(S.sel_modality == t("Telehealth"), "video", "building-2"), S.sel_modality),
            spacing="2",
            padding="12px",
            border_radius="8px",
            border=f"1px solid {rx.color('gray', 5)}",
            width="100%",
        ),
        rx.cond(
            S.sel_rule != "",
            rx.hstack(
                rx.icon("clock", size=16, flex_shrink="0", margin_top="2px", aria_hidden="true"),
                rx.text(S.sel_rule, size="2", id="booking-rule"),
                spacing="2",
                align="start",
                color=rx.color("gray", 11),
                width="100%",
            ),
        ),
        rx.cond(~S.is_reschedule, _repeat_section()),
        _change_section(),
        rx.cond(
            S.dialog_error != "",
            rx.callout(S.dialog_error, icon="circle-alert", color_scheme="red", role="alert", width="100%"),
        ),
        rate_limit_callout(S.rate_limited),
        rx.flex(
            rx.button(t("Cancel"), variant="soft", color_scheme="gray", on_click=S.dismiss),
            rx.cond(
                S.repeat,
                rx.button(
                    t("Book series"),
                    on_click=S.book_series,
                    disabled=~S.series_checked | (S.series_bookable == 0),
                    loading=S.busy,
                ),
                rx.button(
                    rx.cond(S.is_reschedule, S.move_label, t("Confirm booking")),
                    on_click=S.confirm,
                    loading=S.busy,
                    disabled=S.has_change & ~S.change_ack,
                    color_scheme=rx.cond(S.has_change, "amber", "teal"),
                ),
            ),
            justify="end",
            spacing="3",
            wrap="wrap",
            width="100%",
        ),
        spacing="4",
        width="100%",
    )


def _done_step() -> rx.Component:
    return rx.vstack(
        rx.hstack(
            rx.icon("circle-check", size=28, color=rx.color("teal", 10)),
            rx.dialog.title(S.done_title, margin="0"),
            align="center",
            spacing="2",
        ),
        rx.dialog.description(S.done_text, size="2"),
        rx.cond(
            S.done_skipped.length() > 0,
            rx.vstack(
                rx.text(t("Not booked:"), size="2", weight="medium"),
                rx.foreach(S.done_skipped, lambda t: rx.text(t, size="2", color_scheme="gray")),
                spacing="1",
            ),
        ),
        rx.flex(
            rx.button(t("Book another time"), variant="soft", color_scheme="gray", on_click=S.dismiss),
            rx.link(rx.button(t("My appointments")), href="/patient/appointments", underline="none"),
            justify="end",
            spacing="3",
            wrap="wrap",
            width="100%",
        ),
        spacing="4",
        width="100%",
    )


def _dialog() -> rx.Component:
    return rx.dialog.root(
        rx.dialog.content(
            rx.cond(S.step == "done", _done_step(), _confirm_step()),
            max_width="520px",
        ),
        open=S.dialog_open,
        on_open_change=S.set_dialog_open,
    )


def _clinic_button(tab: ClinicTab) -> rx.Component:
    chosen = S.clinic_choice == tab.id
    return rx.button(
        rx.icon(rx.cond(tab.current, "map-pin", "map-pin-plus"), size=14),
        tab.label,
        on_click=S.choose_clinic(tab.id),
        variant=rx.cond(chosen, "solid", "outline"),
        color_scheme=rx.cond(tab.current, "blue", "amber"),
        aria_pressed=rx.cond(chosen, "true", "false"),
        size="2",
        height="auto",
        min_height="36px",
        white_space="normal",
        text_align="left",
    )


def _clinic_chooser() -> rx.Component:
    """The appointment's own clinic first; the provider's other clinics reachable, each labelled as a change."""
    return rx.cond(
        S.clinic_tabs.length() > 1,
        rx.vstack(
            rx.text(t("Clinic"), size="2", weight="medium", id="clinic-choice-label"),
            rx.flex(
                rx.foreach(S.clinic_tabs, _clinic_button),
                wrap="wrap",
                spacing="2",
                role="group",
                aria_labelledby="clinic-choice-label",
            ),
            spacing="1",
            width="100%",
        ),
    )


def _other_clinic_note() -> rx.Component:
    return rx.cond(
        S.other_clinic_note != "",
        rx.callout(S.other_clinic_note, icon="map-pin-plus", color_scheme="amber", role="status", width="100%"),
    )


def _reschedule_banner() -> rx.Component:
    return rx.fragment(
        rx.cond(
            S.is_reschedule,
            rx.callout(
                rx.text(
                    t(
                        "Choose a new time for your appointment of {when} ({where}). It is marked “Current” below.",
                        when=S.reschedule_from,
                        where=S.reschedule_where,
                    ),
                ),
                icon="calendar-sync",
                color_scheme="blue",
                width="100%",
            ),
        ),
        rx.cond(S.is_reschedule, _clinic_chooser()),
        rx.cond(
            S.reschedule_error != "",
            rx.callout(S.reschedule_error, icon="circle-alert", color_scheme="amber", role="alert", width="100%"),
        ),
    )


def _fully_booked() -> rx.Component:
    return rx.callout(
        rx.vstack(
            rx.text(
                t(
                    "{provider} has no free time in the weeks open for booking. Join the waitlist: when a time "
                    "frees up, you can be offered it first.",
                    provider=S.provider_name,
                ),
            ),
            button_link(
                rx.icon("list-plus", size=16),
                t("Join waitlist"),
                href="/patient/waitlist/join?provider_id=" + S.provider_ref,
                color_scheme="amber",
            ),
            spacing="3",
        ),
        icon="calendar-x",
        color_scheme="amber",
        width="100%",
        role="status",
    )


def _not_found() -> rx.Component:
    return rx.vstack(
        empty_state("user-x", t("This provider is not available for online booking.")),
        rx.link(t("Back to Find care"), href="/patient/find"),
        align="center",
        width="100%",
    )


@rx.page(
    route="/patient/provider/[provider_id]",
    title=t("Book a time") + f" · {APP_NAME}",
    on_load=[SessionState.guard("patient"), LiveProvider.link, S.live_mark, S.load],
)
def provider_week() -> rx.Component:
    return shell(
        "patient",
        live_refresh(S.live_update, LiveProvider),
        rx.link(
            rx.hstack(rx.icon("arrow-left", size=14), rx.text(t("Find care"), size="2"), align="center", spacing="1"),
            href="/patient/find",
        ),
        rx.cond(
            ~S.loaded,
            # Opened while over the rate limit: say so, instead of a spinner that never ends.
            rx.cond(S.rate_limited != "", rate_limit_callout(S.rate_limited), loading()),
            rx.cond(
                S.provider_found,
                rx.vstack(
                    page_header(
                        S.provider_name,
                        S.provider_kind + " · " + S.provider_clinics,
                    ),
                    rx.flex(
                        rx.foreach(S.provider_specialties, lambda s: rx.badge(s, variant="soft")),
                        wrap="wrap",
                        spacing="2",
                    ),
                    _reschedule_banner(),
                    rx.cond(~S.provider_has_free & ~S.is_reschedule, _fully_booked()),
                    _week(),
                    _dialog(),
                    spacing="4",
                    width="100%",
                ),
                _not_found(),
            ),
        ),
    )
