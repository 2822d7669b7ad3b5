"""The Audit page: who looked at which patient's data (and every change), filtered, paged, exported as CSV."""

from __future__ import annotations

import reflex as rx

from portal.components import responsive as stack
from portal.components.fields import field_label, labelled_select
from portal.components.shell import APP_NAME, empty_state, page_header, shell
from portal.state.audit import KIND_OPTIONS
from portal.state.audit import AuditState as S
from portal.state.session import SessionState


def _date_filter(label: str, ident: str, value: rx.Var, on_change: rx.EventHandler) -> rx.Component:
    return rx.vstack(
        field_label(label, ident),
        rx.input(type="date", id=ident, value=value, on_change=on_change, width="170px"),
        spacing="1",
    )


def _filters() -> rx.Component:
    return rx.vstack(
        rx.hstack(
            labelled_select("Show", "au-kind", KIND_OPTIONS, S.kind, S.set_kind, min_width="210px"),
            labelled_select("Staff member", "au-staff", S.staff_options, S.staff_filter, S.set_staff_filter),
            labelled_select("Action", "au-action", S.action_options, S.action_filter, S.set_action_filter),
            _date_filter("From", "au-start", S.start_day, S.set_start_day),
            _date_filter("To", "au-end", S.end_day, S.set_end_day),
            rx.button("Clear filters", variant="ghost", color_scheme="gray", on_click=S.clear_filters),
            rx.spacer(),
            rx.button(rx.icon("download", size=16), "Export CSV", variant="soft", on_click=S.export_csv),
            align="end",
            spacing="3",
            wrap="wrap",
            width="100%",
        ),
        rx.cond(
            S.patient_filter != "",
            rx.callout(
                rx.hstack(
                    rx.text("Who looked at ", rx.text.strong(S.patient_chip), size="2"),
                    rx.button(
                        "All patients",
                        size="1",
                        variant="soft",
                        color_scheme="gray",
                        on_click=S.filter_patient(""),
                    ),
                    align="center",
                    spacing="3",
                ),
                icon="user-search",
                variant="surface",
                width="100%",
                class_name="audit-patient-filter",
            ),
        ),
        spacing="3",
        width="100%",
    )


def _row(row: rx.Var) -> rx.Component:
    return stack.row(
        stack.cell("When", rx.text(row["when"], size="2", white_space="nowrap")),
        stack.title_cell(
            rx.vstack(
                rx.text(row["who"], weight="medium"),
                rx.text(row["role"], size="1", color_scheme="gray"),
                spacing="0",
            )
        ),
        stack.cell("What", rx.text(row["action"])),
        stack.cell(
            "Patients",
            rx.cond(
                row["first_patient_id"] != "",
                rx.link(
                    row["patients"],
                    on_click=S.filter_patient(row["first_patient_id"]),
                    href="#",
                    cursor="pointer",
                    title="Who looked at this patient",
                ),
                rx.text(row["patients"], color_scheme="gray"),
            ),
        ),
        stack.cell(
            "Through, from",
            rx.vstack(
                rx.text(row["via"], size="1", font_family="var(--code-font-family)"),
                rx.text(row["address"], size="1", color_scheme="gray"),
                spacing="0",
            ),
        ),
        data_audit_id=row["id"],
        data_action=row["action_key"],
    )


def _pager() -> rx.Component:
    return rx.hstack(
        rx.text(S.page_label, size="2", color_scheme="gray"),
        rx.spacer(),
        rx.button("Newer", variant="soft", color_scheme="gray", on_click=S.previous_page, disabled=S.page == 0),
        rx.button("Older", variant="soft", color_scheme="gray", on_click=S.next_page, disabled=~S.has_more),
        align="center",
        width="100%",
    )


@rx.page(
    route="/admin/audit",
    title=f"Audit · {APP_NAME}",
    on_load=[SessionState.guard("admin"), S.load],
)
def admin_audit() -> rx.Component:
    return shell(
        "admin",
        page_header("Audit", "Who looked at which patient's data, and every change, from the append-only trail"),
        _filters(),
        rx.cond(S.load_error != "", rx.callout(S.load_error, icon="triangle-alert", color_scheme="red", role="alert")),
        rx.cond(
            S.loaded,
            rx.cond(
                S.rows.length() > 0,
                rx.vstack(
                    rx.table.root(
                        rx.table.header(
                            rx.table.row(
                                *[
                                    rx.table.column_header_cell(h)
                                    for h in ("When", "Who", "What", "Patients", "Through, from")
                                ]
                            )
                        ),
                        rx.table.body(rx.foreach(S.rows, _row)),
                        variant="surface",
                        width="100%",
                        class_name=stack.STACK_ON_PHONE,
                    ),
                    _pager(),
                    width="100%",
                ),
                rx.card(empty_state("shield-check", "Nothing in the trail matches these filters."), width="100%"),
            ),
            rx.center(rx.spinner(size="3"), padding="40px", width="100%"),
        ),
    )
