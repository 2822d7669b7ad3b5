"""The patient's payments: the fee policy (accepted explicitly), the card on file, and their charges.

In the patient's language (portal/i18n.py). With Stripe configured, "Save a card" opens Stripe's own card form
(Stripe.js Elements, in Stripe's frames) in this page: the card number goes from the browser to Stripe only."""

from __future__ import annotations

import reflex as rx

from portal.components.shell import APP_NAME, empty_state, page_header, shell
from portal.i18n import N_, t
from portal.state.payments import STRIPE_ELEMENT_ID
from portal.state.payments import PatientPaymentsState as S
from portal.state.session import SessionState


def _fee_line(line: rx.Var) -> rx.Component:
    return rx.hstack(
        rx.text(line["label"], size="2"),
        rx.spacer(),
        rx.text(line["amount"], size="2", weight="bold", white_space="nowrap"),
        width="100%",
        align="start",
    )


def _policy() -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.heading(t("Fee policy"), size="4", as_="h2"),
            rx.cond(
                S.policy_source == "none",
                rx.text(t("Your practice charges no fees online."), size="2", color_scheme="gray"),
                rx.vstack(
                    rx.text(S.policy_text, size="2", white_space="pre-wrap"),
                    rx.vstack(rx.foreach(S.fee_lines, _fee_line), width="100%", spacing="1", max_width="520px"),
                    rx.cond(
                        S.card_required,
                        rx.callout(t("A card on file is needed to book."), icon="credit-card", size="1"),
                    ),
                    rx.cond(
                        S.accepted_on != "",
                        rx.badge(
                            rx.icon("check", size=14),
                            t("Accepted on {day}", day=S.accepted_on),
                            color_scheme="green",
                            size="2",
                        ),
                        rx.button(rx.icon("check", size=16), t("I accept this fee policy"), on_click=S.accept),
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


def _stripe_form() -> rx.Component:
    """Stripe's card form (mounted by Stripe.js into the box) with Save and Cancel; shown in Stripe mode only."""
    return rx.vstack(
        rx.box(id=STRIPE_ELEMENT_ID, width="100%", max_width="520px", min_height="120px"),
        rx.cond(
            S.card_error != "",
            rx.callout(S.card_error, icon="triangle-alert", color_scheme="red", size="1", role="alert"),
        ),
        rx.hstack(
            rx.button(t("Save this card"), on_click=S.submit_card, loading=S.card_busy),
            rx.button(t("Cancel"), variant="soft", color_scheme="gray", on_click=S.close_card_form),
            spacing="3",
        ),
        width="100%",
        spacing="3",
    )


def _card() -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.heading(t("Card on file"), size="4", as_="h2"),
            rx.cond(
                S.card_label != "",
                rx.hstack(rx.icon("credit-card", size=18), rx.text(S.card_label, size="3"), align="center"),
                rx.text(t("No card on file."), size="2", color_scheme="gray"),
            ),
            rx.text(
                t("Your card number never reaches the practice: only its brand and last four digits are kept."),
                size="1",
                color_scheme="gray",
            ),
            rx.cond(
                S.card_form_open,
                _stripe_form(),
                rx.hstack(
                    rx.button(
                        rx.icon("plus", size=16),
                        rx.cond(S.card_label != "", t("Replace card"), t("Save a card")),
                        variant="soft",
                        on_click=S.save_card,
                    ),
                    rx.cond(
                        S.payments_mode == "fake",
                        rx.badge(t("Test mode: a test card is saved"), variant="soft"),
                    ),
                    align="center",
                    spacing="3",
                    wrap="wrap",
                ),
            ),
            spacing="3",
            width="100%",
        ),
        width="100%",
    )


COLUMNS = (N_("Date"), N_("What"), N_("Appointment"), N_("Amount"), N_("Status"), N_("Note"))


def _charge(row: rx.Var) -> rx.Component:
    return rx.table.row(
        rx.table.cell(row["created"], white_space="nowrap"),
        rx.table.cell(row["kind"]),
        rx.table.cell(row["appointment"]),
        rx.table.cell(row["amount"], white_space="nowrap"),
        rx.table.cell(rx.badge(row["status"], color_scheme=row["color"], variant="soft")),
        rx.table.cell(row["note"]),
    )


def _charge_item(row: rx.Var) -> rx.Component:
    """One charge on a phone: what and how much, its status, the appointment, the date and any note."""
    return rx.vstack(
        rx.hstack(
            rx.text(row["kind"], size="3", weight="medium"),
            rx.spacer(),
            rx.text(row["amount"], size="3", weight="bold", white_space="nowrap"),
            width="100%",
            align="start",
        ),
        rx.hstack(
            rx.badge(row["status"], color_scheme=row["color"], variant="soft"),
            rx.text(row["note"], size="2", color_scheme="gray"),
            align="center",
            spacing="2",
            wrap="wrap",
        ),
        rx.text(row["appointment"], size="2", color_scheme="gray"),
        rx.text(row["created"], size="1", color_scheme="gray"),
        spacing="1",
        width="100%",
        padding="12px",
        border_bottom=f"1px solid {rx.color('gray', 4)}",
    )


def _charges() -> rx.Component:
    return rx.vstack(
        rx.heading(t("Charges"), size="4", as_="h2"),
        rx.cond(
            S.charges.length() > 0,
            rx.fragment(
                rx.box(
                    rx.table.root(
                        rx.table.header(rx.table.row(*[rx.table.column_header_cell(t(h)) for h in COLUMNS])),
                        rx.table.body(rx.foreach(S.charges, _charge)),
                        variant="surface",
                        width="100%",
                    ),
                    width="100%",
                    display=["none", "none", "block"],
                ),
                rx.vstack(
                    rx.foreach(S.charges, _charge_item),
                    spacing="0",
                    width="100%",
                    display=["flex", "flex", "none"],
                    border=f"1px solid {rx.color('gray', 5)}",
                    border_radius="8px",
                ),
            ),
            empty_state("receipt", t("No charges.")),
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
        page_header(t("Payments"), t("Your practice's fees, your card on file and your charges.")),
        rx.flex(_policy(), _card(), spacing="4", direction="column", width="100%"),
        _charges(),
    )
