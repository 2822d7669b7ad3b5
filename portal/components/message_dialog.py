"""One notification shown as the patient got it (patient history and admin outbox)."""

from __future__ import annotations

from typing import Any

import reflex as rx

from portal.i18n import t


def message_dialog(state: Any) -> rx.Component:
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title(state.message_title),
            rx.dialog.description(state.message_meta, size="2", color_scheme="gray"),
            rx.vstack(
                rx.cond(state.message_to != "", rx.text(t("To: {to}", to=state.message_to), size="2")),
                rx.cond(
                    state.message_subject != "",
                    rx.text(t("Subject: {subject}", subject=state.message_subject), size="2", weight="medium"),
                ),
                rx.box(
                    rx.text(state.message_text, size="2", white_space="pre-wrap", overflow_wrap="anywhere"),
                    padding="12px",
                    border_radius="8px",
                    background=rx.color("gray", 2),
                    border=f"1px solid {rx.color('gray', 5)}",
                    width="100%",
                    max_height="50vh",
                    overflow_y="auto",
                ),
                spacing="2",
                margin_top="12px",
                width="100%",
            ),
            rx.hstack(
                rx.dialog.close(rx.button(t("Close"), variant="soft", color_scheme="gray")),
                justify="end",
                margin_top="16px",
            ),
            max_width="640px",
        ),
        open=state.message_open,
        on_open_change=state.set_message_open,
    )
