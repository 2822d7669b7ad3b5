"""The patient's payments: the fee policy (accepted explicitly), the card on file, and their charges."""

from __future__ import annotations

import reflex as rx

from portal.components.shell import APP_NAME, empty_state, page_header, shell
from portal.state.payments import PatientPaymentsState as S
from portal.state.session import SessionState


def _fee_line(line: rx.Var) -> rx.Component:
    return rx.hstack(
        rx.text(line["label"], size="2"),
        rx.spacer(),
        rx.text(line["amount"], size="2", weight="bold"),
        width="100%",
    )


def _policy() -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.heading("Fee policy", size="4", as_="h2"),
            rx.cond(
                S.policy_source == "none",
                rx.text("Your practice charges no fees online.", size="2", color_scheme="gray"),
                rx.vstack(
                    rx.text(S.policy_text, size="2", white_space="pre-wrap"),
                    rx.vstack(rx.foreach(S.fee_lines, _fee_line), width="100%", spacing="1", max_width="520px"),
                    rx.cond(
                        S.card_required,
                        rx.callout("A card on file is needed to book.", icon="credit-card", size="1"),
                    ),
                    rx.cond(
                        S.accepted_on != "",
                        rx.badge(
                            rx.icon("check", size=14), "Accepted on ", S.accepted_on, color_scheme="green", size="2"
                        ),
                        rx.button(rx.icon("check", size=16), "I accept this fee policy", on_click=S.accept),
                    ),
                    spacing="3",
                    width="100%",
                ),
            ),
            spacing="3",
            width="100%",
        ),
        width="100%",
    )


def _card() -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.heading("Card on file", size="4", as_="h2"),
            rx.cond(
                S.card_label != "",
                rx.hstack(rx.icon("credit-card", size=18), rx.text(S.card_label, size="3"), align="center"),
                rx.text("No card on file.", size="2", color_scheme="gray"),
            ),
            rx.text(
                "Your card number never reaches the practice: only its brand and last four digits are kept.",
                size="1",
                color_scheme="gray",
            ),
            rx.hstack(
                rx.button(
                    rx.icon("plus", size=16),
                    rx.cond(S.card_label != "", "Replace card", "Save a card"),
                    variant="soft",
                    on_click=S.save_card,
                ),
                rx.cond(S.payments_mode == "fake", rx.badge("Test mode: a test card is saved", variant="soft")),
                align="center",
                spacing="3",
            ),
            spacing="3",
            width="100%",
        ),
        width="100%",
    )


def _charge(row: rx.Var) -> rx.Component:
    return rx.table.row(
        rx.table.cell(row["created"]),
        rx.table.cell(row["kind"]),
        rx.table.cell(row["appointment"]),
        rx.table.cell(row["amount"]),
        rx.table.cell(rx.badge(row["status"], color_scheme=row["color"], variant="soft")),
        rx.table.cell(row["note"]),
    )


def _charges() -> rx.Component:
    return rx.vstack(
        rx.heading("Charges", size="4", as_="h2"),
        rx.cond(
            S.charges.length() > 0,
            rx.table.root(
                rx.table.header(
                    rx.table.row(
                        *[
                            rx.table.column_header_cell(h)
                            for h in ("Date", "What", "Appointment", "Amount", "Status", "Note")
                        ]
                    )
                ),
                rx.table.body(rx.foreach(S.charges, _charge)),
                variant="surface",
                width="100%",
            ),
            empty_state("receipt", "No charges."),
        ),
        width="100%",
        spacing="3",
    )


@rx.page(
    route="/patient/payments",
    title=f"Payments · {APP_NAME}",
    on_load=[SessionState.guard("patient"), S.load],
)
def patient_payments() -> rx.Component:
    return shell(
        "patient",
        page_header("Payments", "Your practice's fees, your card on file and your charges."),
        rx.flex(_policy(), _card(), spacing="4", direction="column", width="100%"),
        _charges(),
    )
