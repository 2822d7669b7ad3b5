"""People: invite patients and staff (a single-use link through the outbox), send an invitation again, and
deactivate an account (its sessions and tokens end at once)."""

from __future__ import annotations

import reflex as rx

from portal.components.fields import error_attrs, field_error, field_label
from portal.components.shell import APP_NAME, empty_state, page_header, shell
from portal.state.onboarding import PeopleState as S
from portal.state.registration import SelfRegistrationAdminState as R
from portal.state.session import SessionState

STATUS_COLORS = {"active": "green", "invited": "blue", "invite expired": "amber", "deactivated": "gray"}


def _error(field: str) -> rx.Component:
    """The field's error (#err-invite-<field>), announced; "form" for one that belongs to no field."""
    return field_error(f"invite-{field}", S.form_errors.get(field, ""))


def _field(label: str, name: str, **props) -> rx.Component:
    ident = f"invite-{name}"
    return rx.vstack(
        field_label(label, ident),
        rx.input(id=ident, name=name, width="100%", **props, **error_attrs(ident, S.form_errors.get(name, ""))),
        _error(name),
        spacing="1",
        width="100%",
    )


def _native_select(label: str | rx.Var, name: str, options: list[rx.Component], **props) -> rx.Component:
    return rx.vstack(
        field_label(label, f"invite-{name}"),
        rx.el.select(
            *options,
            id=f"invite-{name}",
            name=name,
            **error_attrs(f"invite-{name}", S.form_errors.get(name, "")),
            style={
                "width": "100%",
                "height": "32px",
                "padding": "0 8px",
                "border_radius": "6px",
                "border": f"1px solid {rx.color('gray', 7)}",
                "background": rx.color("gray", 1),
                "color": rx.color("gray", 12),
                "font_size": "14px",
            },
            **props,
        ),
        _error(name),
        spacing="1",
        width="100%",
    )


def _invite_dialog() -> rx.Component:
    return rx.dialog.root(
        rx.dialog.content(
            rx.dialog.title("Invite someone"),
            rx.dialog.description(
                "They get a single-use link to choose their password and accept the terms. Their account stays "
                "inactive until they do.",
                size="2",
                margin_bottom="12px",
            ),
            rx.form(
                rx.vstack(
                    _error("form"),
                    _native_select(
                        "Role",
                        "role",
                        [
                            rx.el.option("Patient", value="patient"),
                            rx.el.option("Clinician (doctor or therapist)", value="doctor"),
                            rx.el.option("Administrator", value="admin"),
                        ],
                        value=S.form_role,
                        on_change=S.set_form_role,
                    ),
                    _field("Full name", "full_name", required=True, max_length=200, auto_complete="off"),
                    _field("E-mail (their sign-in name)", "email", type="email", required=True, max_length=320),
                    _field(
                        "Mobile, with country code (optional: the link by SMS too)",
                        "phone",
                        type="tel",
                        max_length=40,
                        placeholder="+1 555 010 0199",
                    ),
                    _native_select(
                        rx.cond(S.form_role == "doctor", "Clinic where they work", "Home clinic"),
                        "clinic_id",
                        [
                            rx.cond(S.form_role == "doctor", rx.fragment(), rx.el.option("No home clinic", value="")),
                            rx.foreach(S.open_clinics, lambda c: rx.el.option(c["name"], value=c["id"])),
                        ],
                    ),
                    rx.cond(
                        S.form_role == "doctor",
                        _field("Title (e.g. MD, PsyD, LCSW)", "title", max_length=40),
                    ),
                    rx.hstack(
                        rx.dialog.close(rx.button("Cancel", variant="soft", color_scheme="gray", type="button")),
                        rx.button(rx.icon("send", size=16), "Send invitation", type="submit"),
                        justify="end",
                        width="100%",
                        spacing="3",
                        wrap="wrap",
                    ),
                    spacing="3",
                ),
                on_submit=S.invite,
                reset_on_submit=False,
            ),
            max_width="500px",
        ),
        open=S.dialog_open,
        on_open_change=S.set_dialog_open,
    )


def _confirm_dialog(title: str, name: rx.Var, description: str, action: str, cancel, confirm, is_open) -> rx.Component:
    """Ask before an action on someone's account: Keep, or the action (in red)."""
    return rx.alert_dialog.root(
        rx.alert_dialog.content(
            rx.alert_dialog.title(title, name, "?"),
            rx.alert_dialog.description(description, size="2"),
            rx.hstack(
                rx.button("Keep", variant="soft", color_scheme="gray", on_click=cancel),
                rx.button(action, color_scheme="red", on_click=confirm),
                justify="end",
                spacing="3",
                margin_top="16px",
            ),
        ),
        open=is_open,
    )


def _deactivate_dialog() -> rx.Component:
    return _confirm_dialog(
        "Deactivate ",
        S.confirm_name,
        "They can no longer sign in, and every session and API token of theirs ends now. Their records "
        "(appointments, audit trail) are kept.",
        "Deactivate",
        S.cancel_deactivate,
        S.confirm_deactivate,
        S.confirm_id != "",
    )


def _reset_mfa_dialog() -> rx.Component:
    return _confirm_dialog(
        "Reset MFA for ",
        S.mfa_reset_name,
        "For a lost or replaced phone. Their authenticator and recovery codes stop working, every session of "
        "theirs ends, and they set up MFA again when they next sign in. The reset is recorded in the audit trail.",
        "Reset MFA",
        S.cancel_reset_mfa,
        S.confirm_reset_mfa,
        S.mfa_reset_id != "",
    )


def _action(allowed: rx.Var, icon: str, label: str, aria: str, row: rx.Var, on_click, **style) -> rx.Component:
    """A row's action button, shown only where the row allows it ("1"), named with the person for screen readers."""
    return rx.cond(
        allowed == "1",
        rx.button(
            rx.icon(icon, size=14),
            label,
            size="2",
            variant="soft",
            on_click=on_click,
            aria_label=aria + row["name"],
            **style,
        ),
    )


def _person(row: rx.Var) -> rx.Component:
    return rx.card(
        rx.flex(
            rx.vstack(
                rx.text(row["name"], weight="medium", size="3"),
                rx.text(row["email"], size="2", color_scheme="gray", word_break="break-all"),
                rx.hstack(
                    rx.badge(row["role_name"], variant="soft", color_scheme="gray"),
                    rx.match(
                        row["status"],
                        *[(key, rx.badge(label, color_scheme=color)) for key, label, color in _status_badges()],
                        rx.badge(row["status_name"]),
                    ),
                    rx.cond(
                        row["expires"] != "",
                        rx.text("Link valid until ", row["expires"], size="1", color_scheme="gray"),
                    ),
                    spacing="2",
                    wrap="wrap",
                    align="center",
                ),
                spacing="1",
                min_width="0",
                flex="1",
            ),
            rx.hstack(
                _action(row["can_resend"], "send", "Send new link", "Send new link to ", row, S.resend(row["id"])),
                _action(
                    row["can_reset_mfa"],
                    "key-round",
                    "Reset MFA",
                    "Reset MFA of ",
                    row,
                    S.ask_reset_mfa(row["id"], row["name"]),
                    color_scheme="gray",
                ),
                _action(
                    row["can_deactivate"],
                    "user-x",
                    "Deactivate",
                    "Deactivate ",
                    row,
                    S.ask_deactivate(row["id"], row["name"]),
                    color_scheme="red",
                ),
                spacing="2",
                wrap="wrap",
            ),
            direction=rx.breakpoints(initial="column", sm="row"),
            justify="between",
            align=rx.breakpoints(initial="start", sm="center"),
            gap="12px",
            width="100%",
        ),
        width="100%",
        class_name="person-row",
    )


def _status_badges() -> list[tuple[str, str, str]]:
    return [
        ("active", "Active", "green"),
        ("invited", "Invited", "blue"),
        ("invite expired", "Invitation expired", "amber"),
        ("deactivated", "Deactivated", "gray"),
    ]


def _self_registration() -> rx.Component:
    """The practice's setting: patients may create their own account (off by default; audited)."""
    return rx.card(
        rx.vstack(
            rx.hstack(
                rx.switch(
                    id="self-registration",
                    checked=R.registration_enabled,
                    on_change=R.set_registration,
                    disabled=~R.registration_loaded,
                    aria_describedby="self-registration-hint",
                ),
                rx.el.label(
                    "Patients may create their own account",
                    html_for="self-registration",
                    font_weight="500",
                    font_size="var(--font-size-2)",
                ),
                align="center",
                spacing="2",
            ),
            rx.text(
                rx.cond(
                    R.registration_enabled,
                    "On: a new patient registers with their name, e-mail and a password, and their account exists "
                    "once they open the link we e-mail them. Every change is recorded in the audit trail.",
                    "Off: only people you invite get an account. Turn it on to let new patients register "
                    "themselves, verified by e-mail.",
                ),
                id="self-registration-hint",
                size="1",
                color_scheme="gray",
            ),
            rx.cond(
                R.registration_enabled,
                rx.text(
                    "Share your registration page: ",
                    rx.link(
                        R.register_url,
                        href=R.register_path,
                        is_external=True,
                        underline="always",
                        word_break="break-all",
                    ),
                    ". Your sign-in link ",
                    rx.code("/login?practice=" + R.registration_slug),
                    " offers it too.",
                    size="2",
                ),
            ),
            spacing="2",
            width="100%",
        ),
        width="100%",
    )


def _filter() -> rx.Component:
    return rx.vstack(
        field_label("Show", "people-filter"),
        rx.el.select(
            rx.el.option("Everyone", value="all"),
            rx.el.option("Staff", value="staff"),
            rx.el.option("Patients", value="patient"),
            id="people-filter",
            value=S.role_filter,
            on_change=S.set_role_filter,
            style={
                "height": "32px",
                "padding": "0 8px",
                "border_radius": "6px",
                "border": f"1px solid {rx.color('gray', 7)}",
                "background": rx.color("gray", 1),
                "color": rx.color("gray", 12),
                "min_width": "170px",
            },
        ),
        spacing="1",
    )


@rx.page(
    route="/admin/people",
    title=f"People · {APP_NAME}",
    on_load=[SessionState.guard("admin"), S.load_people, R.load_registration],
)
def admin_people() -> rx.Component:
    return shell(
        "admin",
        page_header(
            "People",
            "Invite patients and staff; deactivate accounts that should end",
            rx.button(rx.icon("user-plus", size=16), "Invite someone", on_click=S.open_invite),
        ),
        _self_registration(),
        _filter(),
        rx.cond(
            S.visible_people.length() > 0,
            rx.vstack(rx.foreach(S.visible_people, _person), spacing="2", width="100%", id="people-list"),
            empty_state("users", "Nobody here yet."),
        ),
        _invite_dialog(),
        _deactivate_dialog(),
        _reset_mfa_dialog(),
    )
