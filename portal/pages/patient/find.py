"""Find care: filter the practice's providers and see when each is next free."""

from __future__ import annotations

import reflex as rx

from portal.components.button_link import button_link
from portal.components.fields import field_label
from portal.components.shell import APP_NAME, empty_state, page_header, shell
from portal.i18n import N_, t
from portal.state.booking import ANY, FindCareState
from portal.state.ratelimit import rate_limit_callout
from portal.state.session import SessionState

MODALITY_OPTIONS = [(ANY, N_("Any way")), ("in_person", N_("In person")), ("telehealth", N_("Telehealth"))]


def _select(label: str | rx.Var, field_id: str, value: rx.Var, on_change, items: rx.Component) -> rx.Component:
    return rx.vstack(
        field_label(label, field_id),
        rx.select.root(
            rx.select.trigger(id=field_id, width="100%"),  # named by its <label for>
            rx.select.content(items),
            value=value,
            on_change=on_change,
        ),
        spacing="1",
        width="100%",
    )


def _filters() -> rx.Component:
    return rx.card(
        rx.form(
            rx.vstack(
                rx.grid(
                    _select(
                        t("Clinic"),
                        "find-clinic",
                        FindCareState.f_clinic,
                        FindCareState.set_f_clinic,
                        rx.foreach(FindCareState.clinic_options, lambda c: rx.select.item(c["name"], value=c["id"])),
                    ),
                    _select(
                        t("Specialty"),
                        "find-specialty",
                        FindCareState.f_specialty,
                        FindCareState.set_f_specialty,
                        rx.fragment(
                            rx.select.item(t("Any specialty"), value=ANY),
                            rx.foreach(FindCareState.specialty_options, lambda s: rx.select.item(s, value=s)),
                        ),
                    ),
                    _select(
                        t("Seen"),
                        "find-modality",
                        FindCareState.f_modality,
                        FindCareState.set_f_modality,
                        rx.fragment(*[rx.select.item(t(label), value=value) for value, label in MODALITY_OPTIONS]),
                    ),
                    _select(
                        t("Language"),
                        "find-language",
                        FindCareState.f_language,
                        FindCareState.set_f_language,
                        rx.fragment(
                            rx.select.item(t("Any language"), value=ANY),
                            rx.foreach(FindCareState.language_options, lambda s: rx.select.item(s, value=s)),
                        ),
                    ),
                    rx.vstack(
                        field_label(t("Name"), "find-q"),
                        rx.input(
                            id="find-q",
                            name="q",
                            default_value=FindCareState.f_q,
                            placeholder=t("e.g. Rivera"),
                            type="search",
                            max_length=100,
                            width="100%",
                        ),
                        spacing="1",
                        width="100%",
                    ),
                    rx.vstack(
                        field_label(t("Free before"), "find-free-before"),
                        rx.input(
                            id="find-free-before",
                            name="free_before",
                            type="date",
                            default_value=FindCareState.f_free_before,
                            min=FindCareState.min_date,
                            width="100%",
                        ),
                        spacing="1",
                        width="100%",
                    ),
                    columns=rx.breakpoints(initial="2", md="3"),
                    spacing="4",
                    width="100%",
                ),
                rx.cond(
                    FindCareState.search_error != "",
                    rx.callout(
                        FindCareState.search_error, icon="circle-alert", color_scheme="red", role="alert", width="100%"
                    ),
                ),
                rx.hstack(
                    rx.button(
                        t("Clear filters"),
                        type="button",
                        variant="soft",
                        color_scheme="gray",
                        on_click=FindCareState.clear,
                    ),
                    rx.button(rx.icon("search", size=16), t("Search"), type="submit", loading=FindCareState.searching),
                    justify="end",
                    width="100%",
                    spacing="3",
                ),
                spacing="4",
                width="100%",
            ),
            on_submit=FindCareState.submit,
            reset_on_submit=False,
            width="100%",
        ),
        width="100%",
    )


def _badges(items: rx.Var, color: str) -> rx.Component:
    return rx.foreach(items, lambda s: rx.badge(s, variant="soft", color_scheme=color))


def _waitlist_button(provider_id: rx.Var, **props) -> rx.Component:
    return button_link(
        rx.icon("list-plus", size=16),
        t("Join waitlist"),
        href=rx.cond(
            FindCareState.f_clinic != ANY,
            "/patient/waitlist/join?provider_id=" + provider_id + "&clinic_id=" + FindCareState.f_clinic,
            "/patient/waitlist/join?provider_id=" + provider_id,
        ),
        color_scheme="amber",
        **props,
    )


def _result(card: rx.Var) -> rx.Component:
    has_free = card.next_free != ""
    return rx.card(
        rx.vstack(
            rx.hstack(
                rx.avatar(fallback=card.initials, size="4", radius="full", color_scheme="teal"),
                rx.vstack(
                    rx.heading(card.name, size="4", as_="h3"),
                    rx.text(card.kind, " · ", card.clinics, size="2", color_scheme="gray"),
                    spacing="1",
                ),
                align="center",
                spacing="3",
                width="100%",
            ),
            rx.flex(
                _badges(card.specialties, "teal"),
                _badges(card.languages, "blue"),
                rx.foreach(
                    card.modalities,
                    lambda m: rx.badge(
                        rx.icon(rx.cond(m == t("Telehealth"), "video", "map-pin"), size=12), m, variant="outline"
                    ),
                ),
                wrap="wrap",
                spacing="2",
            ),
            rx.separator(size="4"),
            rx.cond(
                has_free,
                rx.hstack(
                    rx.icon("calendar-check", size=18, color=rx.color("teal", 10)),
                    rx.text(rx.text.strong(t("Next free:")), " ", card.next_free, size="2"),
                    align="center",
                    spacing="2",
                ),
                rx.callout(
                    t("No free time in this search. Join the waitlist and we will offer you the first time that fits."),
                    icon="calendar-x",
                    color_scheme="amber",
                    size="1",
                    width="100%",
                ),
            ),
            rx.hstack(
                rx.cond(
                    has_free,
                    button_link(t("See times"), rx.icon("arrow-right", size=16), href="/patient/provider/" + card.id),
                    rx.fragment(
                        _waitlist_button(card.id),
                        button_link(t("See times"), href="/patient/provider/" + card.id, variant="soft"),
                    ),
                ),
                spacing="3",
                wrap="wrap",
                justify="end",
                width="100%",
            ),
            spacing="3",
            height="100%",
            justify="between",
        ),
        width="100%",
        aria_label=card.name,
        role="article",
    )


def _no_free() -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.icon("calendar-x", size=32, color=rx.color("amber", 10)),
            rx.heading(FindCareState.empty_title, size="4", as_="h2", text_align="center"),
            rx.text(
                t(
                    "Join the waitlist with the times that suit you: when a time frees up, we offer it to you first. "
                    "Or clear some filters to see more providers."
                ),
                color_scheme="gray",
                size="2",
                text_align="center",
                max_width="520px",
            ),
            rx.hstack(
                button_link(
                    rx.icon("list-plus", size=16),
                    t("Join waitlist"),
                    href=rx.cond(
                        FindCareState.f_clinic != ANY,
                        "/patient/waitlist/join?clinic_id=" + FindCareState.f_clinic,
                        "/patient/waitlist/join",
                    ),
                    color_scheme="amber",
                    size="3",
                ),
                rx.button(
                    t("Clear filters"), variant="soft", color_scheme="gray", size="3", on_click=FindCareState.clear
                ),
                spacing="3",
                wrap="wrap",
                justify="center",
            ),
            align="center",
            spacing="3",
            padding="12px",
        ),
        width="100%",
        role="status",
    )


def _results() -> rx.Component:
    return rx.cond(
        FindCareState.searched,
        rx.vstack(
            rx.cond(~FindCareState.any_free, _no_free()),
            rx.cond(
                FindCareState.results.length() > 0,
                rx.vstack(
                    rx.text(FindCareState.result_count_label, size="2", color_scheme="gray"),
                    rx.grid(
                        rx.foreach(FindCareState.results, _result),
                        columns=rx.breakpoints(initial="1", md="2"),
                        spacing="4",
                        width="100%",
                    ),
                    spacing="2",
                    width="100%",
                ),
            ),
            spacing="4",
            width="100%",
        ),
        rx.cond(FindCareState.rate_limited == "", empty_state("search", t("Searching…"))),
    )


@rx.page(
    route="/patient/find",
    title=t("Find care") + f" · {APP_NAME}",
    on_load=[SessionState.guard("patient"), FindCareState.load],
)
def find_care() -> rx.Component:
    return shell(
        "patient",
        page_header(t("Find care"), t("Search the practice's providers and book a free time")),
        _filters(),
        rate_limit_callout(FindCareState.rate_limited),
        _results(),
    )
