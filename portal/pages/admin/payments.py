"""Fees for staff: the list with filters and a waive button (doctor: their appointments; admin: all, plus the
fee policy form and CSV export)."""

from __future__ import annotations

import reflex as rx

from portal.components.fields import field_label, labelled_select
from portal.components.shell import APP_NAME, empty_state, page_header, shell
from portal.state.payments import StaffPaymentsState as S
from portal.state.session import SessionState


def _row(row: rx.Var, admin: bool) -> rx.Component:
    refund = (
        [
            rx.cond(
                row["refundable"] != "",
                rx.button("Refund", size="1", variant="soft", color_scheme="gray", on_click=S.refund(row["id"])),
            )
        ]
        if admin
        else []
    )
    return rx.table.row(
        rx.table.cell(row["created"], white_space="nowrap"),
        rx.table.cell(row["patient"]),
        rx.table.cell(row["kind"]),
        rx.table.cell(row["appointment"]),
        rx.table.cell(row["amount"], white_space="nowrap"),
        rx.table.cell(rx.badge(row["status"], color_scheme=row["color"], variant="soft")),
        rx.table.cell(row["note"]),
        rx.table.cell(
            rx.cond(
                row["waivable"] != "",
                rx.button("Waive", size="1", variant="soft", color_scheme="gray", on_click=S.ask_waive(row["id"])),
            ),
            *refund,
        ),
    )


def _waive_dialog() -> rx.Component:
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title("Waive this fee?"),
            rx.dialog.description("The patient is not charged. Your name and the reason are kept in the audit trail."),
            rx.vstack(
                field_label("Reason (optional)", "waive-reason"),
                rx.input(id="waive-reason", value=S.waive_reason, on_change=S.set_waive_reason, width="100%"),
                rx.hstack(
                    rx.button("Keep the fee", variant="soft", color_scheme="gray", on_click=S.cancel_waive),
                    rx.button("Waive fee", on_click=S.waive),
                    justify="end",
                    width="100%",
                    spacing="3",
                ),
                spacing="3",
                padding_top="12px",
            ),
        ),
        open=S.waive_id != "",
        on_open_change=lambda _open: S.cancel_waive(),
    )


def _list(export: bool) -> rx.Component:
    return rx.vstack(
        rx.hstack(
            labelled_select("Status", "pay-status", S.status_options, S.status_filter, S.set_status_filter),
            labelled_select("Fee", "pay-kind", S.kind_options, S.kind_filter, S.set_kind_filter),
            rx.spacer(),
            *(
                [rx.button(rx.icon("download", size=16), "Export CSV", variant="soft", on_click=S.export_csv)]
                if export
                else []
            ),
            align="end",
            spacing="3",
            wrap="wrap",
            width="100%",
        ),
        rx.cond(
            S.rows.length() > 0,
            rx.table.root(
                rx.table.header(
                    rx.table.row(
                        *[
                            rx.table.column_header_cell(h)
                            for h in ("Date", "Patient", "Fee", "Appointment", "Amount", "Status", "Note", "")
                        ]
                    )
                ),
                rx.table.body(rx.foreach(S.rows, lambda row: _row(row, export))),
                variant="surface",
                width="100%",
            ),
            empty_state("receipt", "No fees match."),
        ),
        _waive_dialog(),
        spacing="3",
        width="100%",
    )


def _money_field(label: str, ident: str, value: rx.Var, on_change: rx.EventHandler) -> rx.Component:
    return rx.vstack(
        field_label(label, ident),
        rx.input(id=ident, value=value, on_change=on_change, width="140px", input_mode="decimal"),
        spacing="1",
    )


def _policy_form() -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.hstack(
                rx.heading("Fee policy", size="4", as_="h2"),
                rx.badge("Version ", S.policy_version, variant="soft", color_scheme="gray"),
                align="center",
                spacing="3",
            ),
            rx.flex(
                _money_field("Late cancellation fee", "pol-late", S.f_late_fee, S.set_f_late_fee),
                _money_field("Within hours of the start", "pol-window", S.f_window_hours, S.set_f_window_hours),
                _money_field("No-show fee", "pol-noshow", S.f_no_show_fee, S.set_f_no_show_fee),
                _money_field("Session price (self-pay)", "pol-session", S.f_session_price, S.set_f_session_price),
                rx.hstack(
                    rx.switch(id="pol-copay-on", checked=S.f_copay_enabled, on_change=S.set_f_copay_enabled),
                    rx.el.label("Collect a copay instead", html_for="pol-copay-on"),
                    align="center",
                    spacing="2",
                ),
                rx.cond(S.f_copay_enabled, _money_field("Copay", "pol-copay", S.f_copay, S.set_f_copay)),
                rx.hstack(
                    rx.switch(id="pol-card", checked=S.f_card_required, on_change=S.set_f_card_required),
                    rx.el.label("A card on file is required to book", html_for="pol-card"),
                    align="center",
                    spacing="2",
                ),
                spacing="5",
                wrap="wrap",
                align="end",
                width="100%",
            ),
            field_label("What patients read and accept", "pol-text"),
            rx.text_area(id="pol-text", value=S.f_text, on_change=S.set_f_text, rows="4", width="100%"),
            rx.cond(S.form_error != "", rx.text(S.form_error, color_scheme="red", size="2", role="alert")),
            rx.hstack(
                rx.text(
                    "Each attended session is charged its copay or price. A change of the terms makes a new "
                    "version: patients accept it again before anything is charged.",
                    size="1",
                    color_scheme="gray",
                ),
                rx.spacer(),
                rx.button(rx.icon("save", size=16), "Save policy", on_click=S.save_policy),
                align="center",
                width="100%",
                wrap="wrap",
            ),
            spacing="3",
            width="100%",
        ),
        width="100%",
    )


@rx.page(
    route="/admin/payments",
    title=f"Payments · {APP_NAME}",
    on_load=[SessionState.guard("admin"), S.load],
)
def admin_payments() -> rx.Component:
    return shell(
        "admin",
        page_header("Payments", "Fees, charges and the fee policy patients accept."),
        _policy_form(),
        _list(export=True),
    )


@rx.page(
    route="/doctor/payments",
    title=f"Fees · {APP_NAME}",
    on_load=[SessionState.guard("doctor"), S.load],
)
def doctor_payments() -> rx.Component:
    return shell(
        "doctor",
        page_header("Fees", "Late cancellations and no-shows of your appointments; waive a fee when it is fair."),
        _list(export=False),
    )
