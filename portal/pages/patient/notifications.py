"""Messages: the language of the pages and messages, how the patient wants to be told (channels, quiet hours),
and what they were told."""

from __future__ import annotations

import reflex as rx

from portal.components.fields import field_label
from portal.components.message_dialog import message_dialog
from portal.components.shell import APP_NAME, empty_state, loading, page_header, shell
from portal.i18n import t
from portal.state.live import LivePatient, live_refresh
from portal.state.notifications import PatientNotificationsState as S
from portal.state.session import SessionState

# Phones drop the channel column (the message reader names it).
WIDE_ONLY = ["none", "table-cell"]


def _error(field: str) -> rx.Component:
    message = S.errors.get(field, "")
    return rx.cond(message != "", rx.text(message, color_scheme="red", size="1", role="alert", id=f"err-{field}"))


def _channel(
    ident: str, label: str | rx.Var, hint: rx.Var | str, checked: rx.Var, on_change, disabled: rx.Var | bool
) -> rx.Component:
    return rx.vstack(
        rx.hstack(
            # Named (Reflex 0.11 submits controls by name only); `save` reads the switches' state, not these fields.
            rx.switch(
                id=ident,
                name=ident.removeprefix("pref-"),
                checked=checked,
                on_change=on_change,
                disabled=disabled,
            ),
            rx.el.label(label, html_for=ident, font_weight="500"),
            align="center",
            spacing="3",
        ),
        rx.text(hint, size="1", color_scheme="gray", padding_left="44px"),
        _error(ident.removeprefix("pref-")),
        spacing="1",
    )


def _language() -> rx.Component:
    """The language of the pages and messages; saved as soon as it is chosen. Its label is in both languages,
    so that someone who cannot read the page's current one still finds it."""
    return rx.card(
        rx.vstack(
            rx.heading(t("Language"), size="4", as_="h2"),
            rx.vstack(
                field_label("Language / Idioma", "pref-language"),
                rx.select.root(
                    rx.select.trigger(id="pref-language", min_width="200px"),
                    rx.select.content(
                        rx.foreach(
                            S.language_options,
                            lambda o: rx.select.item(o["name"], value=o["id"], custom_attrs={"lang": o["id"]}),
                        )
                    ),
                    value=SessionState.lang,
                    on_change=S.choose_language,
                ),
                _error("language"),
                spacing="1",
            ),
            rx.text(t("Your pages and the messages we send you use this language."), size="1", color_scheme="gray"),
            rx.cond(
                S.language_saved != "",
                rx.text(S.language_saved, size="2", color_scheme="green", role="status", id="language-saved"),
            ),
            spacing="3",
            width="100%",
        ),
        width="100%",
        max_width="640px",
    )


def _preferences() -> rx.Component:
    no_phone = ~S.has_phone
    return rx.card(
        rx.form(
            rx.vstack(
                rx.heading(t("How we reach you"), size="4", as_="h2"),
                rx.cond(
                    S.console_mode,
                    rx.callout(
                        t("This practice runs in demo mode: messages stay in the app (below) and nothing is sent."),
                        icon="info",
                        color_scheme="blue",
                        size="1",
                    ),
                ),
                rx.cond(
                    S.unsubscribed,
                    rx.callout(
                        t("You unsubscribed from all messages. Choose a channel and save to hear from us again."),
                        icon="bell-off",
                        color_scheme="amber",
                    ),
                ),
                _channel(
                    "pref-email_opt_in",
                    t("E-mail"),
                    t("Confirmations, reminders and waitlist offers, with the details."),
                    S.email_opt_in,
                    S.set_email_opt_in,
                    ~S.has_email,
                ),
                _channel(
                    "pref-sms_opt_in",
                    t("Text message (SMS)"),
                    rx.cond(
                        no_phone,
                        t("Add a mobile number at the front desk to use this."),
                        t("Short texts with a link; no details of your care. Reply STOP to end them."),
                    ),
                    S.sms_opt_in,
                    S.set_sms_opt_in,
                    no_phone,
                ),
                _channel(
                    "pref-whatsapp_opt_in",
                    t("WhatsApp"),
                    rx.cond(
                        no_phone,
                        t("Add a mobile number at the front desk to use this."),
                        t("The same short messages on WhatsApp."),
                    ),
                    S.whatsapp_opt_in,
                    S.set_whatsapp_opt_in,
                    no_phone,
                ),
                rx.cond(
                    S.nothing_chosen,
                    rx.callout(
                        t("With no channel chosen you will not hear about waitlist offers. Check this page instead."),
                        icon="info",
                        color_scheme="gray",
                        size="1",
                    ),
                ),
                rx.separator(width="100%"),
                rx.hstack(
                    rx.switch(
                        id="pref-quiet", name="quiet_hours", checked=S.quiet_enabled, on_change=S.set_quiet_enabled
                    ),
                    rx.el.label(t("Quiet hours"), html_for="pref-quiet", font_weight="500"),
                    align="center",
                    spacing="3",
                ),
                rx.text(
                    t(
                        "Waitlist offers and reminders wait until your quiet hours end ({zone}). "
                        "Confirmations and cancellations still arrive at once.",
                        zone=S.zone_label,
                    ),
                    size="1",
                    color_scheme="gray",
                ),
                rx.cond(
                    S.quiet_enabled,
                    rx.hstack(
                        rx.vstack(
                            field_label(t("From"), "pref-quiet-start"),
                            rx.input(
                                id="pref-quiet-start",
                                name="quiet_hours_start",
                                type="time",
                                default_value=S.quiet_start,
                                width="140px",
                            ),
                            _error("quiet_hours_start"),
                            spacing="1",
                        ),
                        rx.vstack(
                            field_label(t("Until"), "pref-quiet-end"),
                            rx.input(
                                id="pref-quiet-end",
                                name="quiet_hours_end",
                                type="time",
                                default_value=S.quiet_end,
                                width="140px",
                            ),
                            _error("quiet_hours_end"),
                            spacing="1",
                        ),
                        spacing="5",
                    ),
                ),
                rx.cond(
                    S.errors.contains("form"),
                    rx.callout(S.errors.get("form", ""), icon="triangle-alert", color_scheme="red", role="alert"),
                ),
                rx.hstack(
                    rx.cond(S.saved != "", rx.text(S.saved, size="2", color_scheme="green", role="status")),
                    rx.spacer(),
                    rx.button(rx.icon("save", size=16), t("Save preferences"), type="submit"),
                    align="center",
                    width="100%",
                ),
                spacing="4",
                width="100%",
            ),
            on_submit=S.save,
            reset_on_submit=False,
            key=S.form_key.to_string(),
            width="100%",
        ),
        width="100%",
        max_width="640px",
    )


def _history_row(row: rx.Var) -> rx.Component:
    return rx.table.row(
        rx.table.cell(rx.text(row["created"], size="2")),
        rx.table.row_header_cell(rx.text(row["event"], weight="medium")),
        rx.table.cell(row["channel"], display=WIDE_ONLY),
        rx.table.cell(
            rx.vstack(
                rx.badge(row["status"], color_scheme=row["status_color"], variant="soft"),
                rx.cond(row["detail"] != "", rx.text(row["detail"], size="1", color_scheme="gray")),
                rx.cond(
                    row["report"] != "",
                    rx.text(row["report"], size="1", color_scheme=row["report_color"], data_testid="provider-report"),
                ),
                spacing="1",
            )
        ),
        rx.table.cell(rx.button(t("Read"), size="1", variant="soft", on_click=S.open_message(row["id"]))),
        data_notification_id=row["id"],
    )


def _history() -> rx.Component:
    return rx.vstack(
        rx.heading(t("Messages we sent you"), size="4", as_="h2"),
        rx.cond(
            S.history.length() > 0,
            rx.table.root(
                rx.table.header(
                    rx.table.row(
                        rx.table.column_header_cell(t("When")),
                        rx.table.column_header_cell(t("About")),
                        rx.table.column_header_cell(t("Channel"), display=WIDE_ONLY),
                        rx.table.column_header_cell(t("Status")),
                        rx.table.column_header_cell(""),
                    )
                ),
                rx.table.body(rx.foreach(S.history, _history_row)),
                variant="surface",
                width="100%",
            ),
            rx.card(empty_state("mail", t("No messages yet.")), width="100%"),
        ),
        spacing="3",
        width="100%",
    )


@rx.page(
    route="/patient/notifications",
    title=t("Messages") + f" · {APP_NAME}",
    on_load=[SessionState.guard("patient"), LivePatient.link, S.load],
)
def patient_notifications() -> rx.Component:
    return shell(
        "patient",
        live_refresh(S.live_update, LivePatient),
        page_header(t("Messages"), t("Your language, how we reach you, and what we sent")),
        rx.cond(S.loaded, rx.vstack(_language(), _preferences(), _history(), spacing="6", width="100%"), loading()),
        message_dialog(S),
    )
