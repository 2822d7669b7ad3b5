"""Terms of use and Privacy notice: public pages with the practice's own text, and the admin's editor."""

from __future__ import annotations

import reflex as rx

from portal.components.fields import field_label
from portal.components.notice_page import APP_NAME
from portal.components.shell import page_header, shell
from portal.state.practice_texts import PracticeTextPageState as P
from portal.state.practice_texts import PracticeTextsAdminState as S
from portal.state.session import SessionState

# -- the public pages --------------------------------------------------------------------------------------------


def _paragraph(text: rx.Var) -> rx.Component:
    # A text node: whatever the practice typed (markup included) is shown as typed, never interpreted.
    return rx.text(text, size="3", white_space="pre-line", line_height="1.6")


def _text_page() -> rx.Component:
    return rx.el.main(
        rx.center(
            rx.vstack(
                rx.hstack(
                    rx.icon("calendar-heart", size=24, color=rx.color("accent", 9), aria_hidden="true"),
                    rx.text(APP_NAME, size="5", weight="bold"),
                    align="center",
                    spacing="2",
                ),
                rx.cond(
                    P.loaded,
                    rx.el.article(
                        rx.vstack(
                            rx.heading(P.title, size="7", as_="h1"),
                            rx.cond(
                                P.practice != "",
                                rx.text(
                                    P.practice,
                                    rx.cond(P.updated != "", " · updated " + P.updated, ""),
                                    size="2",
                                    color_scheme="gray",
                                ),
                            ),
                            rx.cond(
                                P.notice != "",
                                rx.callout(P.notice, icon="info", color_scheme="blue", size="1", width="100%"),
                            ),
                            rx.foreach(P.paragraphs, _paragraph),
                            spacing="4",
                            width="100%",
                        ),
                        width="100%",
                    ),
                    rx.center(rx.spinner(size="3"), padding="40px", width="100%"),
                ),
                rx.separator(width="100%"),
                rx.hstack(
                    rx.link(P.back_label, href=P.back_href),
                    rx.spacer(),
                    rx.cond(
                        P.kind == "terms",
                        rx.link("Privacy notice", href="/privacy" + P.practice_query),
                        rx.link("Terms of use", href="/terms" + P.practice_query),
                    ),
                    width="100%",
                    wrap="wrap",
                    spacing="3",
                ),
                spacing="5",
                width="100%",
                max_width="720px",
            ),
            padding=["20px 16px", "32px 24px"],
            width="100%",
        ),
        id="main-content",
    )


@rx.page(route="/terms", title=f"Terms of use · {APP_NAME}", on_load=P.load)
def terms() -> rx.Component:
    return _text_page()


@rx.page(route="/privacy", title=f"Privacy notice · {APP_NAME}", on_load=P.load)
def privacy() -> rx.Component:
    return _text_page()


# -- the admin's editor ------------------------------------------------------------------------------------------


def _editor(kind: str, title: str, hint: str) -> rx.Component:
    ident = f"text-{kind}"
    error = S.errors.get(kind, "")
    return rx.card(
        rx.form(
            rx.vstack(
                rx.hstack(
                    rx.heading(title, size="4", as_="h2"),
                    rx.badge(
                        rx.cond(S.sources.get(kind, "") == "practice", "Your practice's text", "Default text"),
                        variant="soft",
                        color_scheme=rx.cond(S.sources.get(kind, "") == "practice", "teal", "gray"),
                    ),
                    rx.spacer(),
                    rx.link(
                        rx.hstack(rx.icon("external-link", size=14), rx.text("View page"), spacing="1"),
                        href=f"/{kind}",
                        is_external=True,
                        size="2",
                    ),
                    align="center",
                    spacing="3",
                    wrap="wrap",
                    width="100%",
                ),
                rx.el.input(type="hidden", name="kind", value=kind),
                field_label(f"{title} (plain text)", ident),
                rx.text_area(
                    id=ident,
                    name="body",
                    default_value=S.texts.get(kind, ""),
                    rows="14",
                    width="100%",
                    resize="vertical",
                    aria_describedby=f"{ident}-hint",
                    aria_invalid=rx.cond(error != "", "true", "false"),
                ),
                rx.text(hint, size="1", color_scheme="gray", id=f"{ident}-hint"),
                rx.cond(error != "", rx.text(error, color_scheme="red", size="2", role="alert", id=f"err-{kind}")),
                rx.hstack(
                    rx.cond(
                        S.saved.get(kind, "") != "",
                        rx.text(S.saved.get(kind, ""), size="2", color_scheme="green", role="status"),
                    ),
                    rx.spacer(),
                    rx.button(
                        "Restore default",
                        type="button",
                        variant="soft",
                        color_scheme="gray",
                        on_click=S.restore_default(kind),
                        disabled=S.sources.get(kind, "") != "practice",
                    ),
                    rx.button(rx.icon("save", size=16), f"Save {title.lower()}", type="submit"),
                    align="center",
                    spacing="3",
                    wrap="wrap",
                    width="100%",
                ),
                rx.cond(
                    S.updated.get(kind, "") != "",
                    rx.text("Last changed ", S.updated.get(kind, ""), size="1", color_scheme="gray"),
                ),
                spacing="3",
                width="100%",
            ),
            on_submit=S.save,
            reset_on_submit=False,
            key=S.form_key.to_string() + kind,
            width="100%",
        ),
        width="100%",
    )


HINT = (
    "Plain text: leave a blank line between paragraphs. Markup is shown as typed, never run. "
    "Up to 20,000 characters. Every change is recorded in the audit trail."
)


@rx.page(
    route="/admin/texts",
    title=f"Terms and privacy · {APP_NAME}",
    on_load=[SessionState.guard("admin"), S.load],
)
def admin_texts() -> rx.Component:
    return shell(
        "admin",
        page_header("Terms and privacy", "The texts your patients and staff read at /terms and /privacy"),
        rx.cond(
            S.slug != "",
            rx.text(
                "Signed-in people see your texts there. For anyone else, link ",
                rx.code("/terms?practice=" + S.slug),
                " and ",
                rx.code("/privacy?practice=" + S.slug),
                ".",
                size="2",
                color_scheme="gray",
            ),
        ),
        rx.cond(
            S.loaded,
            rx.vstack(
                _editor("terms", "Terms of use", HINT),
                _editor("privacy", "Privacy notice", HINT),
                spacing="5",
                width="100%",
            ),
            rx.center(rx.spinner(size="3"), padding="40px", width="100%"),
        ),
    )
