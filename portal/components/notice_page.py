"""Whole-page notices in the app's look: a page for another role, and a page that does not exist."""

from __future__ import annotations

import reflex as rx

from portal.components.button_link import button_link
from portal.state.session import SessionState

APP_NAME = "Waitwell"

# Whom each role's pages are for, as the notice words it.
AUDIENCE = {"patient": "patients", "doctor": "clinic staff", "admin": "practice admins"}
WHAT_IT_HOLDS = {
    "patient": "It shows a patient's own appointments, waitlist and messages.",
    "doctor": "It shows a clinician's own schedule, hours and waitlist.",
    "admin": "It holds the practice's clinics, policy, outbox and audit trail.",
}


def notice_card(*children: rx.Component, label: str) -> rx.Component:
    """A centred card with the brand on top, for pages outside the shell."""
    return rx.el.main(
        rx.center(
            rx.card(
                rx.vstack(
                    rx.hstack(
                        rx.icon("calendar-heart", size=24, color=rx.color("accent", 9), aria_hidden="true"),
                        rx.text(APP_NAME, size="5", weight="bold"),
                        align="center",
                        spacing="2",
                    ),
                    *children,
                    spacing="4",
                    width="100%",
                ),
                width="100%",
                max_width="480px",
                padding="24px",
            ),
            min_height="80vh",
            padding="16px",
            width="100%",
        ),
        aria_label=label,
    )


def wrong_role(role: str) -> rx.Component:
    """Shown instead of a `role` page to a signed-in person of another role: whom it is for, and their own home."""
    return notice_card(
        rx.heading(f"This page is for {AUDIENCE[role]}", size="5", as_="h1"),
        rx.text(
            "You are signed in as ",
            rx.text.strong(SessionState.user_name),
            " (",
            SessionState.role_label,
            rx.cond(SessionState.practice_name != "", ", " + SessionState.practice_name, ""),
            "). ",
            WHAT_IT_HOLDS[role],
            size="2",
        ),
        button_link(rx.icon("house", size=16), "Go to your home", href=SessionState.home_path, size="3"),
        label="Wrong role",
    )
