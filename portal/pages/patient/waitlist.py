"""My waitlist: live offers first (with a ticking hold), then each active entry, then past entries collapsed."""

from __future__ import annotations

import reflex as rx

from portal.components.button_link import button_link
from portal.components.countdown import countdown, expiry_gate
from portal.components.shell import APP_NAME, empty_state, loading, page_header, shell
from portal.i18n import t
from portal.state.live import LivePatient, live_refresh
from portal.state.session import SessionState
from portal.state.waitlist_patient import MyWaitlistState as S


def _fact(label: str | rx.Var, value: rx.Var, icon: str) -> rx.Component:
    return rx.cond(
        value != "",
        rx.hstack(
            rx.icon(icon, size=16, color=rx.color("gray", 10), flex_shrink="0", margin_top="2px"),
            rx.vstack(
                rx.text(label, size="1", color_scheme="gray"),
                rx.text(value, size="2"),
                spacing="0",
            ),
            align="start",
            spacing="2",
            min_width="180px",
        ),
    )


def _offer(card: rx.Var) -> rx.Component:
    busy = S.busy == card.offer_id
    return rx.box(
        rx.vstack(
            rx.hstack(
                rx.icon("bell-ring", size=20, color=rx.color("teal", 11)),
                rx.heading(t("A time is held for you"), size="4", as_="h3", color=rx.color("teal", 12)),
                align="center",
                spacing="2",
            ),
            rx.flex(
                rx.vstack(
                    rx.text(card.offer_day, weight="bold", size="5"),
                    rx.text(card.offer_time, size="4"),
                    rx.text(card.offer_zone, size="1", color_scheme="gray"),
                    rx.cond(
                        card.offer_modality != "",
                        rx.hstack(
                            rx.cond(
                                card.offer_modality == t("Telehealth"),
                                rx.icon("video", size=16, color=rx.color("teal", 11)),
                                rx.icon("map-pin", size=16, color=rx.color("teal", 11)),
                            ),
                            rx.text(card.offer_modality, size="2", weight="medium", class_name="offer-modality"),
                            align="center",
                            spacing="1",
                        ),
                    ),
                    spacing="1",
                ),
                rx.vstack(
                    rx.text(t("Held for you until {time}", time=card.offer_until), size="2", weight="medium"),
                    rx.hstack(
                        rx.icon("timer", size=18, color=rx.color("amber", 11)),
                        countdown(
                            card.offer_until_iso,
                            # The patient's one offer: its minutes are announced (politely), not its seconds.
                            announce=True,
                            on_expire=S.refresh,
                            font_size="var(--font-size-6)",
                            font_weight="700",
                            font_variant_numeric="tabular-nums",
                            color=rx.color("amber", 11),
                            class_name="offer-countdown",
                        ),
                        rx.text(t("left"), size="2", color_scheme="gray"),
                        align="center",
                        spacing="2",
                    ),
                    spacing="1",
                ),
                spacing="5",
                wrap="wrap",
                align="center",
                width="100%",
            ),
            rx.text(
                t(
                    "No one else is offered this time while it is held for you. If you do not answer in time, "
                    "it goes to the next patient and you keep your place on the waitlist."
                ),
                size="2",
                color_scheme="gray",
            ),
            # At 0:00 the browser disables Accept and Decline and says the offer expired, at once.
            expiry_gate(
                card.offer_until_iso,
                rx.flex(
                    rx.button(
                        rx.icon("check", size=16),
                        t("Accept"),
                        size="3",
                        color_scheme="teal",
                        on_click=S.accept(card.offer_id),
                        loading=busy,
                        disabled=S.busy != "",
                    ),
                    rx.button(
                        t("Decline"),
                        size="3",
                        variant="soft",
                        color_scheme="gray",
                        on_click=S.open_decline(card.offer_id),
                        disabled=S.busy != "",
                    ),
                    spacing="3",
                    wrap="wrap",
                ),
                expired_note=card.offer_expired_note,
                class_name="offer-actions",
            ),
            spacing="3",
            width="100%",
        ),
        padding="16px",
        border_radius="12px",
        border=f"2px solid {rx.color('teal', 8)}",
        background=rx.color("teal", 2),
        width="100%",
        role="region",
        aria_label=t("Offer"),
    )


def _history(card: rx.Var) -> rx.Component:
    return rx.cond(
        card.history.length() > 0,
        rx.el.details(
            rx.el.summary(
                t("Earlier offers ({n})", n=card.history.length().to_string()),
                cursor="pointer",
                font_size="var(--font-size-2)",
                color=rx.color("gray", 11),
            ),
            rx.vstack(
                rx.foreach(
                    card.history,
                    lambda o: rx.hstack(
                        rx.text(o.when, size="2", weight="medium", min_width="170px"),
                        rx.badge(o.outcome, color_scheme=o.tone, variant="soft"),
                        rx.text(o.at, size="1", color_scheme="gray"),
                        spacing="3",
                        align="center",
                        wrap="wrap",
                    ),
                ),
                spacing="2",
                padding_top="8px",
            ),
            width="100%",
        ),
    )


def _entry(card: rx.Var) -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.flex(
                rx.vstack(
                    rx.heading(card.target, size="4", as_="h2"),
                    rx.text(
                        card.clinic,
                        rx.cond(card.detail != "", " · " + card.detail, ""),
                        size="2",
                        color_scheme="gray",
                    ),
                    spacing="1",
                ),
                rx.spacer(),
                rx.hstack(
                    rx.badge(card.urgency, variant="outline", color_scheme="gray"),
                    rx.badge(card.status_label, color_scheme=card.tone, size="2"),
                    spacing="2",
                ),
                width="100%",
                wrap="wrap",
                gap="8px",
            ),
            rx.cond(card.offer_id != "", _offer(card)),
            rx.cond(
                card.notice != "",
                rx.callout(
                    card.notice,
                    icon="timer-off",
                    color_scheme="amber",
                    role="status",
                    width="100%",
                    class_name="offer-expired-notice",
                ),
            ),
            rx.flex(
                _fact(t("Your place"), card.band, "list-ordered"),
                _fact(t("Estimated wait"), card.wait, "hourglass"),
                _fact(t("Times that suit you ({zone})", zone=card.zone), card.windows, "clock"),
                _fact(t("Dates"), card.dates, "calendar-range"),
                _fact(t("On the list since"), card.since, "calendar-plus"),
                spacing="5",
                wrap="wrap",
                width="100%",
            ),
            rx.cond(
                card.reason != "",
                rx.text(
                    rx.text.strong(t("Your note to the care team:"), weight="medium"),
                    " ",
                    card.reason,
                    size="2",
                    color_scheme="gray",
                ),
            ),
            rx.cond(
                card.reconfirm,
                rx.callout(
                    rx.flex(
                        rx.text(
                            rx.cond(
                                card.expires != "",
                                t(
                                    "Still interested? Let us know to keep your place (otherwise it ends {when}).",
                                    when=card.expires,
                                ),
                                t("Still interested? Let us know to keep your place."),
                            ),
                            size="2",
                        ),
                        rx.button(
                            t("Yes, keep me on the list"),
                            size="2",
                            on_click=S.confirm_interest(card.id),
                            loading=S.busy == card.id,
                        ),
                        spacing="3",
                        align="center",
                        wrap="wrap",
                        justify="between",
                        width="100%",
                    ),
                    icon="circle-help",
                    color_scheme="amber",
                    width="100%",
                ),
                rx.cond(
                    card.expires != "",
                    rx.text(t("Your place is kept until {when}.", when=card.expires), size="1", color_scheme="gray"),
                ),
            ),
            rx.flex(
                _history(card),
                rx.spacer(),
                rx.button(
                    rx.icon("log-out", size=14),
                    t("Leave waitlist"),
                    variant="ghost",
                    color_scheme="red",
                    size="2",
                    on_click=S.open_leave(card.id),
                    disabled=S.busy != "",
                ),
                width="100%",
                align="start",
                wrap="wrap",
                gap="8px",
            ),
            spacing="3",
            width="100%",
        ),
        width="100%",
        role="article",
        aria_label=card.target,
    )


def _past_entry(card: rx.Var) -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.flex(
                rx.vstack(
                    rx.text(card.target, weight="medium"),
                    rx.text(card.clinic, " · ", t("since {day}", day=card.since), size="1", color_scheme="gray"),
                    spacing="0",
                ),
                rx.spacer(),
                rx.badge(card.status_label, color_scheme=card.tone, variant="soft"),
                width="100%",
                wrap="wrap",
                gap="8px",
            ),
            _history(card),
            spacing="2",
            width="100%",
        ),
        size="1",
        width="100%",
    )


def _past() -> rx.Component:
    return rx.cond(
        S.past.length() > 0,
        rx.vstack(
            rx.button(
                rx.icon(rx.cond(S.show_past, "chevron-down", "chevron-right"), size=16),
                t("Past entries ({n})", n=S.past.length().to_string()),
                variant="ghost",
                color_scheme="gray",
                on_click=S.toggle_past,
                aria_expanded=rx.cond(S.show_past, "true", "false"),
            ),
            rx.cond(
                S.show_past,
                rx.vstack(rx.foreach(S.past, _past_entry), spacing="2", width="100%"),
            ),
            spacing="2",
            width="100%",
        ),
    )


def _leave_dialog() -> rx.Component:
    return rx.alert_dialog.root(
        rx.alert_dialog.content(
            rx.alert_dialog.title(t("Leave this waitlist?")),
            rx.alert_dialog.description(
                t(
                    "You will no longer be offered times with {provider}. If you join again later, you start again "
                    "at the back.",
                    provider=S.leave_target,
                ),
            ),
            rx.flex(
                rx.alert_dialog.cancel(rx.button(t("Stay on it"), variant="soft", color_scheme="gray")),
                rx.button(t("Leave waitlist"), color_scheme="red", on_click=S.leave, loading=S.busy != ""),
                justify="end",
                spacing="3",
                margin_top="16px",
            ),
            max_width="480px",
        ),
        open=S.leave_open,
        on_open_change=S.set_leave_open,
    )


def _decline_dialog() -> rx.Component:
    return rx.alert_dialog.root(
        rx.alert_dialog.content(
            rx.alert_dialog.title(t("Decline this time?")),
            rx.alert_dialog.description(
                t(
                    "{when} will be offered to someone else. You stay on the waitlist for another time.",
                    when=S.decline_when,
                ),
            ),
            rx.flex(
                rx.alert_dialog.cancel(rx.button(t("Keep the offer"), variant="soft", color_scheme="gray")),
                rx.button(t("Decline offer"), color_scheme="red", on_click=S.decline, loading=S.busy != ""),
                justify="end",
                spacing="3",
                margin_top="16px",
            ),
            max_width="480px",
        ),
        open=S.decline_open,
        on_open_change=S.set_decline_open,
    )


@rx.page(
    route="/patient/waitlist",
    title=t("My waitlist") + f" · {APP_NAME}",
    on_load=[SessionState.guard("patient"), LivePatient.link, S.load],
)
def my_waitlist() -> rx.Component:
    return shell(
        "patient",
        live_refresh(S.live_update, LivePatient),
        page_header(
            t("My waitlist"),
            t("We offer you a time as soon as one fits. Times are in each clinic's time zone."),
            button_link(rx.icon("list-plus", size=16), t("Join a waitlist"), href="/patient/waitlist/join"),
        ),
        rx.cond(
            S.just_booked != "",
            rx.callout(
                rx.text(
                    t("Booked: {what}.", what=S.just_booked),
                    " ",
                    rx.link(t("See My appointments"), href="/patient/appointments"),
                ),
                icon="calendar-check",
                color_scheme="green",
                role="status",
                width="100%",
            ),
        ),
        rx.cond(
            ~S.loaded,
            loading(),
            rx.vstack(
                rx.cond(
                    S.active.length() > 0,
                    rx.vstack(rx.foreach(S.active, _entry), spacing="3", width="100%"),
                    rx.vstack(
                        empty_state("list-checks", t("You are not on any waitlist right now.")),
                        rx.link(t("Find care and join a waitlist"), href="/patient/find"),
                        align="center",
                        width="100%",
                    ),
                ),
                _past(),
                spacing="5",
                width="100%",
            ),
        ),
        _leave_dialog(),
        _decline_dialog(),
    )
