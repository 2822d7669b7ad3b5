"""The outbox: every message of the practice with its delivery state, filters, dead letters sent again."""

from __future__ import annotations

import reflex as rx

from portal.components import responsive as stack
from portal.components.button_link import button_link
from portal.components.fields import field_label, labelled_select
from portal.components.message_dialog import message_dialog
from portal.components.shell import APP_NAME, empty_state, page_header, shell
from portal.state.live import LiveTenant, live_refresh
from portal.state.notifications import OutboxState as S
from portal.state.session import SessionState


def _stat(label: str, value: rx.Var, color: str, status: str) -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.text(label, size="2", color_scheme="gray"),
            rx.heading(value, size="6", color_scheme=color),
            spacing="1",
        ),
        on_click=S.set_status_filter(status),
        cursor="pointer",
        min_width="150px",
        flex="1",
        role="button",
        aria_label=f"Show {label.lower()}",
    )


def _stats() -> rx.Component:
    return rx.flex(
        _stat("Dead letters", S.dead_count, "red", "dead"),
        _stat("Failed, will retry", S.failed_count, "amber", "failed"),
        _stat("Waiting or in flight", S.waiting_count, "gray", "pending"),
        _stat("Sent", S.sent_count, "green", "sent"),
        spacing="3",
        wrap="wrap",
        width="100%",
    )


def _filters() -> rx.Component:
    return rx.hstack(
        labelled_select(
            "Status", "ob-status", S.status_options, S.status_filter, S.set_status_filter, min_width="190px"
        ),
        labelled_select(
            "Channel", "ob-channel", S.channel_options, S.channel_filter, S.set_channel_filter, min_width="190px"
        ),
        labelled_select("Message", "ob-event", S.event_options, S.event_filter, S.set_event_filter),
        rx.button("Clear filters", variant="ghost", color_scheme="gray", on_click=S.clear_filters),
        align="end",
        spacing="3",
        wrap="wrap",
        width="100%",
    )


def _patient_card() -> rx.Component:
    return rx.card(
        rx.hstack(
            rx.vstack(
                rx.text("Messages to ", rx.text.strong(S.patient_name), size="3"),
                rx.text("Their choices (read-only; only the patient can change them):", size="1", color_scheme="gray"),
                rx.hstack(
                    rx.badge("Channels: ", S.patient_prefs.get("channels", ""), variant="soft"),
                    rx.badge("Quiet hours: ", S.patient_prefs.get("quiet", ""), variant="soft", color_scheme="gray"),
                    rx.badge(S.patient_prefs.get("contact", ""), variant="soft", color_scheme="gray"),
                    spacing="2",
                    wrap="wrap",
                ),
                spacing="2",
            ),
            rx.spacer(),
            button_link(
                rx.icon("shield-check", size=14),
                "Who looked at this patient",
                href="/admin/audit?patient=" + S.patient_filter,
                variant="soft",
            ),
            rx.button("All patients", variant="soft", color_scheme="gray", on_click=S.show_patient("")),
            align="center",
            width="100%",
            wrap="wrap",
        ),
        width="100%",
        aria_label="Patient notification preferences",
    )


def _settings() -> rx.Component:
    return rx.card(
        rx.form(
            rx.vstack(
                rx.hstack(
                    rx.heading("Reminders and quiet hours", size="3", as_="h2"),
                    rx.badge(S.reminder_source, variant="soft", color_scheme="gray"),
                    align="center",
                    spacing="3",
                ),
                rx.flex(
                    rx.vstack(
                        field_label("Remind patients before each appointment", "ob-reminders"),
                        rx.input(
                            id="ob-reminders",
                            name="reminder_offsets",
                            default_value=S.reminder_text,
                            placeholder="48h, 2h",
                            width="220px",
                            aria_describedby="ob-reminders-hint",
                            aria_invalid=rx.cond(S.settings_error != "", "true", "false"),
                        ),
                        rx.text(
                            "Up to 4 times, like 48h, 2h or 30m (15 minutes to 14 days). Empty: no reminders.",
                            size="1",
                            color_scheme="gray",
                            id="ob-reminders-hint",
                        ),
                        spacing="1",
                    ),
                    rx.vstack(
                        rx.hstack(
                            rx.switch(
                                id="ob-email-now",
                                # Named: a form control is submitted by name (Reflex 0.11 drops ids); the handler
                                # reads the switch's state, not this field.
                                name="quiet_hours_email_now",
                                checked=S.email_now,
                                on_change=S.set_email_now,
                            ),
                            rx.el.label(
                                "In a patient's quiet hours, e-mail still goes at once", html_for="ob-email-now"
                            ),
                            align="center",
                            spacing="2",
                        ),
                        rx.text(
                            "Offers and reminders by SMS and WhatsApp always wait for the quiet hours to end. "
                            "Off: e-mail waits too.",
                            size="1",
                            color_scheme="gray",
                        ),
                        spacing="1",
                        max_width="420px",
                    ),
                    spacing="6",
                    wrap="wrap",
                    width="100%",
                ),
                rx.cond(
                    S.settings_error != "",
                    rx.text(S.settings_error, color_scheme="red", size="2", role="alert", id="err-reminders"),
                ),
                rx.hstack(
                    rx.cond(
                        S.settings_saved != "", rx.text(S.settings_saved, size="2", color_scheme="green", role="status")
                    ),
                    rx.spacer(),
                    rx.button(rx.icon("save", size=16), "Save settings", type="submit", variant="soft"),
                    align="center",
                    width="100%",
                ),
                spacing="3",
                width="100%",
            ),
            on_submit=S.save_settings,
            reset_on_submit=False,
            key=S.settings_key.to_string(),
            width="100%",
        ),
        width="100%",
    )


def _row(row: rx.Var) -> rx.Component:
    return stack.row(
        stack.cell("Created", rx.text(row["created"], size="2")),
        stack.title_cell(
            rx.link(row["patient"], on_click=S.show_patient(row["patient_id"]), cursor="pointer", href="#")
        ),
        stack.cell("Message", rx.text(row["event"])),
        stack.cell("Channel", row["channel"]),
        stack.cell(
            "Delivery",
            rx.vstack(
                rx.badge(row["status"], color_scheme=row["status_color"], variant="soft"),
                rx.cond(row["detail"] != "", rx.text(row["detail"], size="1", color_scheme="gray")),
                rx.cond(
                    row["report"] != "",
                    rx.text(row["report"], size="1", color_scheme=row["report_color"], data_testid="provider-report"),
                ),
                rx.cond(
                    (row["error"] != "") & (row["status_key"] != "sent"),
                    rx.text(row["error"], size="1", color_scheme="red", max_width="280px", overflow_wrap="anywhere"),
                ),
                spacing="1",
            ),
        ),
        stack.actions_cell(
            rx.hstack(
                rx.button("Read", size="1", variant="soft", on_click=S.open_message(row["id"])),
                rx.cond(
                    row["retryable"] == "1",
                    rx.button(
                        rx.icon("rotate-cw", size=14),
                        "Retry",
                        size="1",
                        color_scheme="amber",
                        on_click=S.retry(row["id"]),
                    ),
                ),
                spacing="2",
            )
        ),
        data_notification_id=row["id"],
    )


@rx.page(
    route="/admin/outbox",
    title=f"Outbox · {APP_NAME}",
    on_load=[SessionState.guard("admin"), LiveTenant.link, S.load],
)
def admin_outbox() -> rx.Component:
    return shell(
        "admin",
        live_refresh(S.live_update),
        page_header("Outbox", "Every message to patients and how its delivery went, live"),
        _stats(),
        rx.cond(S.patient_filter != "", _patient_card()),
        _filters(),
        rx.text(S.summary, size="2", color_scheme="gray"),
        rx.cond(S.load_error != "", rx.callout(S.load_error, icon="triangle-alert", color_scheme="red", role="alert")),
        rx.cond(
            S.loaded,
            rx.cond(
                S.rows.length() > 0,
                rx.table.root(
                    rx.table.header(
                        rx.table.row(
                            *[
                                rx.table.column_header_cell(h)
                                for h in ("Created", "Patient", "Message", "Channel", "Delivery", "")
                            ]
                        )
                    ),
                    rx.table.body(rx.foreach(S.rows, _row)),
                    variant="surface",
                    width="100%",
                    class_name=stack.STACK_ON_PHONE,
                ),
                rx.card(empty_state("inbox", "No messages match these filters."), width="100%"),
            ),
            rx.center(rx.spinner(size="3"), padding="40px", width="100%"),
        ),
        _settings(),
        message_dialog(S),
    )
