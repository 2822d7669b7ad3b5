"""Clinics: add, edit, archive, restore and delete (refused, with the reason, while appointments exist)."""

from __future__ import annotations

import reflex as rx

from portal.components.clinic_selector import clinic_selector
from portal.components.fields import field_label
from portal.components.shell import APP_NAME, page_header, shell
from portal.state.admin import ClinicFormState
from portal.state.session import SessionState


def _error(field: str) -> rx.Component:
    message = ClinicFormState.form_errors.get(field, "")
    return rx.cond(message != "", rx.text(message, color_scheme="red", size="1", role="alert"))


def _field(label: str, name: str, value: rx.Var, **props) -> rx.Component:
    return rx.vstack(
        field_label(label, f"clinic-{name}"),
        rx.input(id=f"clinic-{name}", name=name, default_value=value, width="100%", **props),
        _error(name),
        spacing="1",
        width="100%",
    )


def _dialog() -> rx.Component:
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title(rx.cond(ClinicFormState.editing_id != "", "Edit clinic", "Add a clinic")),
            rx.dialog.description("Times for this clinic are shown in its time zone.", size="2", margin_bottom="12px"),
            rx.form(
                rx.vstack(
                    _error("form"),
                    _field("Name", "name", ClinicFormState.form_name, required=True),
                    _field(
                        "Time zone (IANA)",
                        "timezone",
                        ClinicFormState.form_timezone,
                        list="clinic-zones",
                        placeholder="America/New_York",
                        required=True,
                    ),
                    rx.el.datalist(
                        rx.foreach(ClinicFormState.timezones, lambda z: rx.el.option(value=z)), id="clinic-zones"
                    ),
                    _field("Address", "address", ClinicFormState.form_address),
                    _field("Phone", "phone", ClinicFormState.form_phone),
                    rx.hstack(
                        rx.dialog.close(rx.button("Cancel", variant="soft", color_scheme="gray", type="button")),
                        rx.button("Save clinic", type="submit"),
                        justify="end",
                        width="100%",
                        spacing="3",
                    ),
                    spacing="3",
                ),
                on_submit=ClinicFormState.save,
                reset_on_submit=False,
            ),
            max_width="480px",
        ),
        open=ClinicFormState.dialog_open,
        on_open_change=ClinicFormState.set_dialog_open,
    )


def _delete_dialog() -> rx.Component:
    return rx.alert_dialog.root(
        rx.alert_dialog.content(
            rx.alert_dialog.title("Delete ", ClinicFormState.delete_name, "?"),
            rx.alert_dialog.description(
                "Deleting removes the clinic for good. A clinic with appointments on record must be archived instead.",
                size="2",
            ),
            rx.cond(
                ClinicFormState.delete_error != "",
                rx.callout(ClinicFormState.delete_error, icon="triangle-alert", color_scheme="red", margin_top="12px"),
            ),
            rx.hstack(
                rx.button("Keep it", variant="soft", color_scheme="gray", on_click=ClinicFormState.cancel_delete),
                rx.button("Delete clinic", color_scheme="red", on_click=ClinicFormState.confirm_delete),
                justify="end",
                spacing="3",
                margin_top="16px",
            ),
        ),
        open=ClinicFormState.delete_id != "",
    )


def _row(row: rx.Var) -> rx.Component:
    archived = row["archived"] == "1"
    return rx.table.row(
        rx.table.row_header_cell(rx.text(row["name"], weight="medium")),
        rx.table.cell(row["timezone"]),
        rx.table.cell(row["upcoming"]),
        rx.table.cell(
            rx.cond(archived, rx.badge("Archived", color_scheme="gray"), rx.badge("Open", color_scheme="teal"))
        ),
        rx.table.cell(
            rx.hstack(
                rx.button("Edit", size="1", variant="soft", on_click=ClinicFormState.open_edit(row["id"])),
                rx.cond(
                    archived,
                    rx.button("Restore", size="1", variant="soft", on_click=ClinicFormState.restore(row["id"])),
                    rx.button(
                        "Archive",
                        size="1",
                        variant="soft",
                        color_scheme="amber",
                        on_click=ClinicFormState.archive(row["id"]),
                    ),
                ),
                rx.button(
                    "Delete",
                    size="1",
                    variant="soft",
                    color_scheme="red",
                    on_click=ClinicFormState.ask_delete(row["id"], row["name"]),
                ),
                spacing="2",
            )
        ),
    )


@rx.page(
    route="/admin/clinics",
    title=f"Clinics · {APP_NAME}",
    on_load=[SessionState.guard("admin"), ClinicFormState.load],
)
def admin_clinics() -> rx.Component:
    return shell(
        "admin",
        page_header(
            "Clinics",
            "Locations of the practice and their time zones",
            clinic_selector(),
            rx.button(rx.icon("plus", size=16), "Add clinic", on_click=ClinicFormState.open_create),
        ),
        rx.table.root(
            rx.table.header(
                rx.table.row(
                    *[rx.table.column_header_cell(h) for h in ("Clinic", "Time zone", "Upcoming", "Status", "")]
                )
            ),
            rx.table.body(rx.foreach(ClinicFormState.visible_clinic_rows, _row)),
            variant="surface",
            width="100%",
        ),
        _dialog(),
        _delete_dialog(),
    )
