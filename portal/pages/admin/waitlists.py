"""Waitlists across clinics: the shared clinic selector plus status, provider, urgency and age filters; live."""

from __future__ import annotations

import reflex as rx

from portal.components import responsive as stack
from portal.components.clinic_selector import clinic_selector
from portal.components.countdown import countdown
from portal.components.fields import labelled_select
from portal.components.shell import APP_NAME, empty_state, page_header, shell
from portal.state.live import LiveTenant, live_refresh
from portal.state.session import SessionState
from portal.state.waitlist_admin import WaitlistOversightState
from portal.state.waitlist_console import EntryRow

S = WaitlistOversightState


def _filters() -> rx.Component:
    return rx.hstack(
        labelled_select("Status", "wl-status", S.status_options, S.status_filter, S.set_status_filter),
        labelled_select("Provider", "wl-provider", S.provider_options, S.provider_filter, S.set_provider_filter),
        labelled_select("Urgency", "wl-urgency", S.urgency_options, S.urgency_filter, S.set_urgency_filter),
        labelled_select("Waiting", "wl-age", S.age_options, S.age_filter, S.set_age_filter),
        rx.button("Clear filters", variant="ghost", color_scheme="gray", on_click=S.clear_filters),
        align="end",
        spacing="3",
        wrap="wrap",
        width="100%",
    )


def _status_cell(row: EntryRow) -> rx.Component:
    return rx.cond(
        row.offer_until_iso != "",
        rx.vstack(
            rx.badge("Offer pending", color_scheme="amber", variant="soft"),
            rx.text(row.offer_slot, size="1", color_scheme="gray"),
            rx.hstack(
                rx.text("Expires ", row.offer_until, " · ", size="1", color_scheme="gray"),
                countdown(row.offer_until_iso, font_size="var(--font-size-1)", font_weight="600"),
                spacing="1",
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
    )


def _row(row: EntryRow) -> rx.Component:
    return stack.row(
        stack.title_cell(
            rx.vstack(
                rx.text(row.patient, weight="medium"),
                rx.text("Prefers ", row.windows, " · ", row.zone, size="1", color_scheme="gray"),
                rx.link(
                    rx.hstack(rx.icon("shield-check", size=12), rx.text("Who looked"), spacing="1", align="center"),
                    href="/admin/audit?patient=" + row.patient_id,
                    size="1",
                    class_name="who-looked",
                ),
                spacing="1",
            )
        ),
        stack.cell(
            "Waiting for",
            rx.vstack(rx.text(row.clinic), rx.text(row.provider, size="1", color_scheme="gray"), spacing="1"),
        ),
        stack.cell("Urgency", rx.badge(row.urgency, color_scheme=row.urgency_color, variant="soft")),
        stack.cell(
            "Waiting",
            rx.vstack(rx.text(row.waiting), rx.text("since ", row.since, size="1", color_scheme="gray"), spacing="1"),
        ),
        stack.cell("Status", _status_cell(row)),
        data_entry_id=row.id,
    )


@rx.page(
    route="/admin/waitlists",
    title=f"Waitlists · {APP_NAME}",
    on_load=[SessionState.guard("admin"), LiveTenant.link, WaitlistOversightState.load],
)
def admin_waitlists() -> rx.Component:
    return shell(
        "admin",
        live_refresh(S.live_update),
        page_header("Waitlists", "Every waitlist of the practice, live", clinic_selector()),
        _filters(),
        rx.text(S.summary, size="2", color_scheme="gray"),
        rx.cond(S.load_error != "", rx.callout(S.load_error, icon="triangle-alert", color_scheme="red", role="alert")),
        rx.cond(
            S.loaded,
            rx.cond(
                S.visible_entries.length() > 0,
                rx.table.root(
                    rx.table.header(
                        rx.table.row(
                            *[
                                rx.table.column_header_cell(h)
                                for h in ("Patient", "Waiting for", "Urgency", "Waiting", "Status")
                            ]
                        )
                    ),
                    rx.table.body(rx.foreach(S.visible_entries, _row)),
                    variant="surface",
                    width="100%",
                    class_name=stack.STACK_ON_PHONE,
                ),
                rx.card(empty_state("inbox", "No entries match these filters."), width="100%"),
            ),
            rx.center(rx.spinner(size="3"), padding="40px", width="100%"),
        ),
    )
