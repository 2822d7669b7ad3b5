"""Join a waitlist: who to wait for, the weekly times that suit (clinic time, zone named), dates, urgency, reason."""

from __future__ import annotations

import reflex as rx

from portal.components.button_link import button_link
from portal.components.fields import error_attrs, field_error, field_label
from portal.components.shell import APP_NAME, loading, page_header, shell
from portal.i18n import N_, t
from portal.state.booking import ANY
from portal.state.ratelimit import rate_limit_callout
from portal.state.session import SessionState
from portal.state.waitlist_patient import URGENCY_CHOICES
from portal.state.waitlist_patient import PatientWaitlistJoinState as S

MODALITY_OPTIONS = [(ANY, N_("Any way")), ("in_person", N_("In person")), ("telehealth", N_("Telehealth"))]
PRESET_BUTTONS = [
    ("mornings", N_("Weekday mornings"), N_("Mon–Fri 08:00–12:00")),
    ("afternoons", N_("Weekday afternoons"), N_("Mon–Fri 12:00–17:00")),
    ("evenings", N_("Evenings"), N_("Mon–Fri 17:00–20:00")),
]


def _message(key: str) -> rx.Var:
    return S.field_errors.get(key, "")


def _error(key: str) -> rx.Component:
    """The service's (or the form's) message for one field: announced, and the field's description."""
    return field_error(key, _message(key))


def _invalid(key: str, *described_by: str) -> dict:
    return error_attrs(key, _message(key), *described_by)


def _select(
    label: str | rx.Var, field_id: str, value: rx.Var, on_change, items: rx.Component, error: str
) -> rx.Component:
    return rx.vstack(
        field_label(label, field_id),
        rx.select.root(
            rx.select.trigger(id=field_id, width="100%", **(_invalid(error) if error else {})),
            rx.select.content(items),
            value=value,
            on_change=on_change,
        ),
        _error(error) if error else rx.fragment(),
        spacing="1",
        width="100%",
    )


def _section(title: str | rx.Var, *children: rx.Component, hint: rx.Component | rx.Var | str = "") -> rx.Component:
    if isinstance(hint, rx.Var) or (isinstance(hint, str) and hint):
        said: rx.Component = rx.text(hint, size="2", color_scheme="gray")
    else:
        said = hint or rx.fragment()
    return rx.card(
        rx.vstack(
            rx.heading(title, size="4", as_="h2"),
            said,
            *children,
            spacing="3",
            width="100%",
        ),
        width="100%",
    )


def _target() -> rx.Component:
    return _section(
        t("Who you want to see"),
        rx.grid(
            _select(
                t("Clinic"),
                "wl-clinic",
                S.j_clinic,
                S.set_j_clinic,
                rx.foreach(S.clinic_options, lambda c: rx.select.item(c["name"], value=c["id"])),
                "clinic",
            ),
            _select(
                t("Provider"),
                "wl-provider",
                S.j_provider,
                S.set_j_provider,
                rx.fragment(
                    rx.select.item(t("Any provider at this clinic"), value=ANY),
                    rx.foreach(S.provider_options, lambda p: rx.select.item(p["name"], value=p["id"])),
                ),
                "provider",
            ),
            rx.cond(
                S.any_provider,
                _select(
                    t("Specialty"),
                    "wl-specialty",
                    S.j_specialty,
                    S.set_j_specialty,
                    rx.fragment(
                        rx.select.item(t("Any specialty"), value=ANY),
                        rx.foreach(S.specialty_options, lambda s: rx.select.item(s, value=s)),
                    ),
                    "specialty",
                ),
            ),
            rx.cond(
                S.any_provider,
                _select(
                    t("Seen"),
                    "wl-modality",
                    S.j_modality,
                    S.set_j_modality,
                    rx.fragment(*[rx.select.item(t(label), value=value) for value, label in MODALITY_OPTIONS]),
                    "modality",
                ),
            ),
            columns=rx.breakpoints(initial="1", sm="2"),
            spacing="4",
            width="100%",
        ),
        hint=t("Waiting for anyone at the clinic usually gets you an offer sooner."),
    )


def _chip(day: rx.Var) -> rx.Component:
    return rx.button(
        rx.cond(day.on, rx.icon("check", size=14), rx.fragment()),
        day.label,
        type="button",
        variant=rx.cond(day.on, "solid", "outline"),
        color_scheme=rx.cond(day.on, "teal", "gray"),
        radius="full",
        size="2",
        aria_pressed=rx.cond(day.on, "true", "false"),
        aria_label=day.name,
        on_click=S.toggle_day(day.weekday),
        min_width="64px",
    )


def _day_row(day: rx.Var) -> rx.Component:
    start_id = "wl-start-" + day.weekday.to_string()
    end_id = "wl-end-" + day.weekday.to_string()
    return rx.cond(
        day.on,
        rx.flex(
            rx.text(day.name, weight="medium", size="2", min_width="96px", aria_hidden="true"),
            rx.hstack(
                rx.el.label(t("From"), html_for=start_id, font_size="var(--font-size-2)"),
                rx.input(
                    id=start_id,
                    type="time",
                    value=day.start,
                    on_change=lambda v: S.set_day_start(day.weekday, v),
                    width="120px",
                ),
                rx.el.label(t("to"), html_for=end_id, font_size="var(--font-size-2)"),
                rx.input(
                    id=end_id,
                    type="time",
                    value=day.end,
                    on_change=lambda v: S.set_day_end(day.weekday, v),
                    width="120px",
                ),
                align="center",
                spacing="2",
                wrap="wrap",
            ),
            align="center",
            spacing="3",
            wrap="wrap",
            width="100%",
            # "From" and "to" are the inputs' names (their visible labels); the day names the row.
            role="group",
            aria_label=day.name,
            padding_y="4px",
            border_bottom=f"1px dashed {rx.color('gray', 5)}",
        ),
    )


def _windows() -> rx.Component:
    return _section(
        t("When suits you"),
        rx.vstack(
            rx.text(t("Quick choices"), size="2", weight="medium"),
            rx.flex(
                *[
                    rx.button(
                        rx.vstack(
                            rx.text(t(label), size="2", weight="medium"),
                            rx.text(t(detail), size="1", color_scheme="gray"),
                            spacing="0",
                            align="start",
                        ),
                        type="button",
                        variant=rx.cond(S.preset == key, "soft", "surface"),
                        color_scheme=rx.cond(S.preset == key, "teal", "gray"),
                        height="auto",
                        padding_y="8px",
                        aria_pressed=rx.cond(S.preset == key, "true", "false"),
                        on_click=S.apply_preset(key),
                    )
                    for key, label, detail in PRESET_BUTTONS
                ],
                spacing="2",
                wrap="wrap",
            ),
            spacing="2",
            width="100%",
        ),
        rx.vstack(
            rx.text(t("Or pick days"), size="2", weight="medium", id="wl-days-label"),
            rx.flex(
                rx.foreach(S.days, _chip),
                spacing="2",
                wrap="wrap",
                role="group",
                aria_labelledby="wl-days-label",
                aria_describedby="err-windows",
            ),
            spacing="2",
            width="100%",
        ),
        rx.cond(
            S.chosen_count > 0,
            rx.vstack(
                rx.foreach(S.days, _day_row),
                rx.button(
                    t("Clear days"),
                    type="button",
                    variant="ghost",
                    color_scheme="gray",
                    size="1",
                    on_click=S.clear_days,
                ),
                spacing="1",
                width="100%",
            ),
        ),
        _error("windows"),
        hint=rx.hstack(
            rx.icon("globe", size=14, color=rx.color("gray", 10)),
            rx.text(
                t("Times are local to {clinic}: {zone}.", clinic=S.clinic_name, zone=S.clinic_zone),
                size="2",
                color_scheme="gray",
            ),
            align="center",
            spacing="2",
        ),
    )


def _dates() -> rx.Component:
    return _section(
        t("Dates"),
        rx.grid(
            rx.vstack(
                field_label(t("Earliest date (optional)"), "wl-earliest"),
                rx.input(
                    id="wl-earliest",
                    name="earliest_date",
                    type="date",
                    min=S.min_date,
                    width="100%",
                    **_invalid("dates"),
                ),
                spacing="1",
                width="100%",
            ),
            rx.vstack(
                field_label(t("Latest date (optional)"), "wl-latest"),
                rx.input(
                    id="wl-latest", name="latest_date", type="date", min=S.min_date, width="100%", **_invalid("dates")
                ),
                spacing="1",
                width="100%",
            ),
            columns=rx.breakpoints(initial="1", sm="2"),
            spacing="4",
            width="100%",
        ),
        _error("dates"),
        hint=t("Leave empty to take the first time that fits."),
    )


def _urgency() -> rx.Component:
    return _section(
        t("How soon"),
        rx.radio_group.root(
            rx.flex(
                *[
                    rx.el.label(
                        rx.radio_group.item(value=value, id=f"wl-urgency-{value}"),
                        rx.text(t(label), size="2", weight="medium"),
                        html_for=f"wl-urgency-{value}",
                        display="flex",
                        align_items="center",
                        gap="8px",
                        padding="8px 12px",
                        border=f"1px solid {rx.color('gray', 6)}",
                        border_radius="8px",
                        cursor="pointer",
                    )
                    for value, label in URGENCY_CHOICES
                ],
                spacing="2",
                wrap="wrap",
            ),
            value=S.j_urgency,
            on_change=S.set_j_urgency,
            aria_label=t("How soon"),
            **_invalid("urgency"),
        ),
        rx.text(S.urgency_hint, size="2", color_scheme="gray"),
        _error("urgency"),
        rx.callout(
            rx.text(
                rx.cond(
                    S.clinic_phone != "",
                    t(
                        "If this is urgent, call the clinic at {phone}. In an emergency, call 911.",
                        phone=S.clinic_phone,
                    ),
                    t("If this is urgent, call the clinic. In an emergency, call 911."),
                ),
            ),
            icon="phone",
            color_scheme="blue",
            size="1",
            width="100%",
        ),
    )


def _reason() -> rx.Component:
    return _section(
        t("Reason (optional)"),
        rx.vstack(
            field_label(t("What would you like help with?"), "wl-reason"),
            rx.text_area(
                id="wl-reason",
                name="reason",
                max_length=500,
                rows="3",
                placeholder=t("A few words, if you like"),
                width="100%",
                **_invalid("reason", "wl-reason-hint"),
            ),
            rx.text(
                t("Up to 500 characters. Visible to your care team only."),
                size="1",
                color_scheme="gray",
                id="wl-reason-hint",
            ),
            _error("reason"),
            spacing="1",
            width="100%",
        ),
    )


def _form_alert() -> rx.Component:
    return rx.cond(
        S.form_error != "",
        rx.callout(
            rx.text(
                S.form_error,
                rx.cond(S.duplicate, rx.fragment(". ", rx.link(t("See My waitlist"), href="/patient/waitlist")), ""),
            ),
            icon="circle-alert",
            color_scheme=rx.cond(S.duplicate, "amber", "red"),
            role="alert",
            width="100%",
        ),
    )


def _form() -> rx.Component:
    return rx.form(
        rx.vstack(
            _target(),
            _windows(),
            _dates(),
            _urgency(),
            _reason(),
            rx.cond(
                S.field_errors.length() > 0, rx.text(t("Please check the fields marked above."), color_scheme="red")
            ),
            _form_alert(),
            rate_limit_callout(S.rate_limited),
            rx.flex(
                button_link(t("Cancel"), href="/patient/find", variant="soft", color_scheme="gray"),
                rx.button(rx.icon("list-plus", size=16), t("Join waitlist"), type="submit", loading=S.busy, size="3"),
                justify="end",
                spacing="3",
                width="100%",
            ),
            spacing="4",
            width="100%",
        ),
        on_submit=S.submit,
        reset_on_submit=False,
        width="100%",
        max_width="760px",
    )


@rx.page(
    route="/patient/waitlist/join",
    title=t("Join a waitlist") + f" · {APP_NAME}",
    on_load=[SessionState.guard("patient"), S.load],
)
def waitlist_join() -> rx.Component:
    return shell(
        "patient",
        rx.link(
            rx.hstack(rx.icon("arrow-left", size=14), rx.text(t("Find care"), size="2"), align="center", spacing="1"),
            href="/patient/find",
        ),
        page_header(
            t("Join a waitlist"),
            rx.cond(
                S.wanted_name != "",
                t("No time suits you yet with {name}? We will offer you the first one that fits.", name=S.wanted_name),
                t("Tell us when suits you: we will offer you the first time that fits."),
            ),
        ),
        rx.cond(~S.loaded, loading(), _form()),
    )
