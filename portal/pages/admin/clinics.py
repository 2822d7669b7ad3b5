"""Clinics: add, edit, archive, restore and delete (refused, with the reason, while appointments exist)."""

from __future__ import annotations

import reflex as rx

from portal.components import responsive as stack
from portal.components.clinic_selector import clinic_selector
from portal.components.fields import error_attrs, field_error, field_label
from portal.components.shell import APP_NAME, page_header, shell
from portal.state.admin import ClinicFormState
from portal.state.session import SessionState


def _error(field: str) -> rx.Component:
    """The field's error (#err-clinic-<field>), announced; "form" for one that belongs to no field."""
    return field_error(f"clinic-{field}", ClinicFormState.form_errors.get(field, ""))


def _field(label: str, name: str, value: rx.Var, **props) -> rx.Component:
    ident = f"clinic-{name}"
    message = ClinicFormState.form_errors.get(name, "")
    return rx.vstack(
        field_label(label, ident),
        rx.input(id=ident, name=name, default_value=value, width="100%", **props, **error_attrs(ident, message)),
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


def _plural(n: rx.Var, one: str, many: str) -> rx.Var:
    return rx.cond(n == 1, one, many)


def _archive_dialog() -> rx.Component:
    """Archiving asks first: what it affects, and (with patients waiting) what happens to the waitlist."""
    S = ClinicFormState
    has_targets = S.archive_targets.length() > 0
    return rx.alert_dialog.root(
        rx.alert_dialog.content(
            rx.alert_dialog.title("Archive ", S.archive_name, "?"),
            rx.alert_dialog.description(
                "An archived clinic takes no new bookings or waitlist entries and is no longer shown to patients. "
                "You can restore it later.",
                size="2",
            ),
            rx.vstack(
                rx.hstack(
                    rx.icon("calendar-check", size=16),
                    rx.text(
                        rx.text.strong(S.archive_upcoming),
                        _plural(S.archive_upcoming, " upcoming appointment is", " upcoming appointments are"),
                        " kept as booked.",
                        size="2",
                    ),
                    align="center",
                    spacing="2",
                    id="archive-appointments",
                ),
                rx.cond(
                    S.archive_active > 0,
                    rx.vstack(
                        rx.hstack(
                            rx.icon("users", size=16),
                            rx.text(
                                rx.text.strong(S.archive_active),
                                _plural(S.archive_active, " patient is", " patients are"),
                                " on its waitlist",
                                rx.cond(
                                    S.archive_offered > 0,
                                    rx.fragment(
                                        " (",
                                        S.archive_offered,
                                        " with a live offer, which is withdrawn)",
                                    ),
                                ),
                                ". What happens to them?",
                                size="2",
                            ),
                            align="center",
                            spacing="2",
                            id="archive-waitlist",
                        ),
                        rx.radio_group.root(
                            rx.vstack(
                                rx.text(
                                    rx.hstack(
                                        rx.radio_group.item(value="move", disabled=~has_targets, id="archive-move"),
                                        "Move them to another clinic (they keep their place and are told)",
                                        spacing="2",
                                    ),
                                    as_="label",
                                    size="2",
                                ),
                                rx.cond(
                                    (S.archive_choice == "move") & has_targets,
                                    rx.vstack(
                                        rx.select.root(
                                            rx.select.trigger(aria_label="Move the waitlist to", width="100%"),
                                            rx.select.content(
                                                rx.foreach(
                                                    S.archive_targets,
                                                    lambda t: rx.select.item(t["name"], value=t["id"]),
                                                )
                                            ),
                                            value=S.archive_target,
                                            on_change=S.set_archive_target,
                                        ),
                                        rx.cond(
                                            S.archive_losing_note != "",
                                            rx.text(S.archive_losing_note, size="1", color_scheme="gray"),
                                        ),
                                        padding_left="24px",
                                        width="100%",
                                        spacing="1",
                                    ),
                                ),
                                rx.cond(
                                    ~has_targets,
                                    rx.text(
                                        "There is no other open clinic to move them to.",
                                        size="1",
                                        color_scheme="gray",
                                        padding_left="24px",
                                    ),
                                ),
                                rx.text(
                                    rx.hstack(
                                        rx.radio_group.item(value="close", id="archive-close"),
                                        "Close their entries and notify the patients",
                                        spacing="2",
                                    ),
                                    as_="label",
                                    size="2",
                                ),
                                spacing="2",
                                width="100%",
                            ),
                            value=S.archive_choice,
                            on_change=S.set_archive_choice,
                            name="archive-choice",
                        ),
                        spacing="2",
                        width="100%",
                    ),
                    rx.hstack(
                        rx.icon("users", size=16),
                        rx.text("No one is on its waitlist.", size="2"),
                        align="center",
                        spacing="2",
                        id="archive-waitlist",
                    ),
                ),
                spacing="3",
                margin_top="12px",
                width="100%",
            ),
            rx.cond(
                S.archive_error != "",
                rx.callout(S.archive_error, icon="triangle-alert", color_scheme="red", margin_top="12px", role="alert"),
            ),
            rx.hstack(
                rx.button("Keep it open", variant="soft", color_scheme="gray", on_click=S.cancel_archive),
                rx.button("Archive clinic", color_scheme="amber", on_click=S.confirm_archive, loading=S.archive_busy),
                justify="end",
                spacing="3",
                margin_top="16px",
            ),
            max_width="520px",
        ),
        open=S.archive_id != "",
    )


def _row(row: rx.Var) -> rx.Component:
    archived = row["archived"] == "1"
    return stack.row(
        stack.title_cell(rx.text(row["name"], weight="medium")),
        stack.cell("Time zone", row["timezone"]),
        stack.cell("Upcoming", row["upcoming"]),
        stack.cell(
            "Status",
            rx.cond(archived, rx.badge("Archived", color_scheme="gray"), rx.badge("Open", color_scheme="teal")),
        ),
        stack.actions_cell(
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
            class_name=stack.STACK_ON_PHONE,
        ),
        _dialog(),
        _delete_dialog(),
        _archive_dialog(),
    )
