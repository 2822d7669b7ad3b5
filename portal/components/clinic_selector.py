"""The clinic selector every admin page shares (its choice lives in AdminState)."""

from __future__ import annotations

import reflex as rx

from portal.state.admin import AdminState


def clinic_selector() -> rx.Component:
    return rx.hstack(
        rx.icon("building-2", size=16, color=rx.color("gray", 10)),
        rx.select.root(
            rx.select.trigger(aria_label="Clinic", min_width="220px"),
            rx.select.content(
                rx.foreach(AdminState.clinic_options, lambda c: rx.select.item(c["name"], value=c["id"])),
            ),
            value=AdminState.selected_clinic_id,
            on_change=AdminState.select_clinic,
        ),
        align="center",
        spacing="2",
    )
