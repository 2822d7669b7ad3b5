"""The app shell: sidebar navigation by role on wide screens, a top bar with a menu on narrow ones."""

from __future__ import annotations

import reflex as rx

from portal.components.idle import idle_watch
from portal.components.native_form import native_form
from portal.components.notice_page import wrong_role
from portal.components.scroll_regions import scroll_regions
from portal.i18n import N_, document_language, t
from portal.state.outage import outage_notice
from portal.state.session import SessionState

APP_NAME = "Waitwell"

NAV: dict[str, list[tuple[str, str, str]]] = {
    # The patient's labels are translated where shown (portal/i18n.py); staff pages stay in English for now.
    "patient": [
        (N_("Home"), "/patient", "house"),
        (N_("Find care"), "/patient/find", "search"),
        (N_("My appointments"), "/patient/appointments", "calendar-check"),
        (N_("My waitlist"), "/patient/waitlist", "list-checks"),
        (N_("Messages"), "/patient/notifications", "bell"),
        (N_("Payments"), "/patient/payments", "credit-card"),
    ],
    "doctor": [
        ("Today", "/doctor", "calendar-days"),
        ("Schedule", "/doctor/schedule", "calendar-range"),
        ("Availability", "/doctor/availability", "clock"),
        ("Waitlist", "/doctor/waitlist", "list-ordered"),
        ("Fees", "/doctor/payments", "receipt"),
    ],
    "admin": [
        ("Overview", "/admin", "layout-dashboard"),
        ("Clinics", "/admin/clinics", "building-2"),
        ("Waitlists", "/admin/waitlists", "list-ordered"),
        ("Policy", "/admin/policy", "sliders-horizontal"),
        ("Terms and privacy", "/admin/texts", "file-text"),
        ("People", "/admin/people", "users"),
        ("Outbox", "/admin/outbox", "send"),
        ("Payments", "/admin/payments", "credit-card"),
        ("Insights", "/admin/insights", "chart-line"),
        ("Audit", "/admin/audit", "shield-check"),
    ],
}


def _say(role: str, text: str) -> str | rx.Var:
    """`text` in the page's language on the patient's pages; as written on the staff pages."""
    return t(text) if role == "patient" else text


def _nav_link(label: str | rx.Var, href: str, icon: str) -> rx.Component:
    active = rx.State.router.url.path == href
    return rx.link(
        rx.hstack(rx.icon(icon, size=18), rx.text(label, size="3"), align="center", spacing="3"),
        href=href,
        underline="none",
        padding_x="12px",
        padding_y="8px",
        border_radius="8px",
        width="100%",
        color=rx.cond(active, rx.color("accent", 11), rx.color("gray", 12)),
        background=rx.cond(active, rx.color("accent", 3), "transparent"),
        _hover={"background": rx.color("accent", 2)},
        aria_current=rx.cond(active, "page", ""),
    )


def _sign_out(role: str) -> rx.Component:
    return native_form(
        rx.button(
            rx.icon("log-out", size=16), _say(role, N_("Sign out")), variant="soft", color_scheme="gray", width="100%"
        ),
        action="/auth/logout",
        # The next person on this tab gets a new Reflex client; this one's state is reset on the server.
        forget_client=True,
        notify=SessionState.end_client_state,
        width="100%",
    )


def _user_box(role: str) -> rx.Component:
    return rx.vstack(
        rx.hstack(
            rx.avatar(fallback=SessionState.initials, size="3", radius="full"),
            rx.vstack(
                rx.text(SessionState.user_name, weight="medium", size="2", trim="both"),
                rx.text(SessionState.role_label, size="1", color_scheme="gray"),
                spacing="1",
            ),
            align="center",
            spacing="3",
        ),
        _sign_out(role),
        spacing="3",
        width="100%",
    )


def _brand() -> rx.Component:
    return rx.vstack(
        rx.hstack(
            rx.icon("calendar-heart", size=24, color=rx.color("accent", 9)),
            rx.heading(APP_NAME, size="5"),
            align="center",
            spacing="2",
        ),
        rx.text(SessionState.practice_name, size="2", color_scheme="gray"),
        spacing="1",
    )


def _nav_for(role: str) -> rx.Component:
    return rx.el.nav(
        rx.vstack(
            *[_nav_link(_say(role, label), href, icon) for label, href, icon in NAV[role]], spacing="1", width="100%"
        ),
        aria_label=_say(role, N_("Main")),
        width="100%",
    )


MAIN_ID = "main-content"


def skip_link(text: str | rx.Var = "Skip to content") -> rx.Component:
    """'Skip to content': the first stop of the Tab order, shown only while focused (assets/a11y.css)."""
    return rx.el.a(
        text,
        href=f"#{MAIN_ID}",
        class_name="skip-link",
        # Move focus (not only the scroll) into the content, without a router navigation to a #hash.
        on_click=[rx.prevent_default, rx.call_script(f"document.getElementById('{MAIN_ID}')?.focus()")],
    )


def _sidebar(role: str) -> rx.Component:
    return rx.vstack(
        _brand(),
        rx.separator(),
        _nav_for(role),
        rx.spacer(),
        _user_box(role),
        width="248px",
        min_width="248px",
        height="100vh",
        position="sticky",
        top="0",
        padding="20px",
        spacing="5",
        border_right=f"1px solid {rx.color('gray', 5)}",
        background=rx.color("gray", 1),
        display=["none", "none", "flex"],
    )


def _topbar(role: str) -> rx.Component:
    return rx.hstack(
        _brand(),
        rx.spacer(),
        rx.menu.root(
            rx.menu.trigger(rx.icon_button(rx.icon("menu"), variant="soft", aria_label=_say(role, N_("Menu")))),
            rx.menu.content(
                *[rx.menu.item(_say(role, label), on_click=rx.redirect(href)) for label, href, _ in NAV[role]],
                rx.menu.separator(),
                rx.box(_sign_out(role), padding="4px"),
            ),
        ),
        padding="12px 16px",
        width="100%",
        align="center",
        border_bottom=f"1px solid {rx.color('gray', 5)}",
        display=["flex", "flex", "none"],
    )


def loading() -> rx.Component:
    # While the database is away the page cannot load: say so under the spinner (portal/state/outage.py).
    return rx.center(
        rx.vstack(rx.spinner(size="3"), outage_notice(), align="center", spacing="4"), height="60vh", width="100%"
    )


def page_header(title: str | rx.Var, subtitle: str | rx.Var = "", *actions: rx.Component) -> rx.Component:
    return rx.hstack(
        rx.vstack(
            rx.heading(title, size="7"),
            rx.cond(subtitle != "", rx.text(subtitle, color_scheme="gray", size="3"), rx.fragment()),
            spacing="1",
        ),
        rx.spacer(),
        *actions,
        width="100%",
        align="end",
        wrap="wrap",
        spacing="3",
    )


def shell(role: str, *content: rx.Component) -> rx.Component:
    """Wrap a page for `role`; nothing of it renders until the server has admitted the visitor."""
    return rx.cond(
        SessionState.admitted_role == role,
        rx.hstack(
            skip_link(_say(role, N_("Skip to content"))),
            # <html lang> follows the page's language (the patient's choice; English elsewhere).
            document_language(),
            scroll_regions(),
            # Automatic logoff: activity reports, "Still there?", and the sign-out at the idle timeout.
            idle_watch(),
            _sidebar(role),
            rx.vstack(
                _topbar(role),
                rx.el.main(
                    rx.vstack(*content, spacing="5", width="100%"),
                    id=MAIN_ID,
                    # Focusable by the skip link only (not a Tab stop of its own).
                    tab_index=-1,
                    padding=["16px", "24px", "32px"],
                    width="100%",
                    max_width="1200px",
                ),
                width="100%",
                spacing="0",
            ),
            spacing="0",
            width="100%",
            align="start",
        ),
        # Signed in with another role: say whom the page is for and link their own home (no silent redirect).
        rx.cond(SessionState.denied_role == role, wrong_role(role), loading()),
    )


def empty_state(icon: str, text: str) -> rx.Component:
    return rx.center(
        rx.vstack(
            rx.icon(icon, size=28, color=rx.color("gray", 9)),
            rx.text(text, color_scheme="gray", size="2"),
            align="center",
            spacing="2",
        ),
        padding="24px",
        width="100%",
    )


def stat_card(label: str, value: rx.Var | str | int, icon: str) -> rx.Component:
    return rx.card(
        rx.hstack(
            rx.box(
                rx.icon(icon, size=20, color=rx.color("accent", 11)),
                padding="10px",
                border_radius="10px",
                background=rx.color("accent", 3),
            ),
            rx.vstack(
                rx.text(label, size="2", color_scheme="gray"),
                rx.heading(value, size="6"),
                spacing="0",
            ),
            align="center",
            spacing="3",
        ),
        width="100%",
    )
