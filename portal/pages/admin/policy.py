"""The waitlist policy editor: the practice default and per-clinic overrides, each field with its bounds."""

from __future__ import annotations

import reflex as rx

from portal.components.fields import error_attrs, field_error, field_label
from portal.components.shell import APP_NAME, page_header, shell
from portal.i18n import t
from portal.state.session import SessionState
from portal.state.waitlist_admin import INT_FIELDS, POLICY_GROUPS, PolicyState, _bound_label

S = PolicyState


def _error(field: str) -> rx.Component:
    """The field's error (#err-<field>), in a live region: announced, and the field's description."""
    return field_error(field, S.errors.get(field, ""))


def _number_field(name: str, label: str, unit: str) -> rx.Component:
    ident = f"policy-{name}"
    return rx.vstack(
        field_label(label, ident),
        rx.hstack(
            rx.input(
                id=ident,
                name=name,
                type="number",
                step="1" if name in INT_FIELDS else "any",
                default_value=S.values.get(name, ""),
                on_change=lambda value, name=name: S.set_draft(name, value),
                width="140px",
                **error_attrs(name, S.errors.get(name, ""), f"bounds-{name}"),
            ),
            rx.text(unit, size="2", color_scheme="gray"),
            align="center",
            spacing="2",
        ),
        rx.text("Allowed: ", _bound_label(name), size="1", color_scheme="gray", id=f"bounds-{name}"),
        _error(name),
        spacing="1",
        min_width="240px",
        flex="1",
    )


def _group(title: str, fields: list[tuple[str, str, str]]) -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.heading(title, size="3", as_="h2"),
            rx.flex(*[_number_field(*f) for f in fields], wrap="wrap", spacing="5", width="100%"),
            spacing="3",
            width="100%",
        ),
        width="100%",
    )


def _time_field(name: str, label: str) -> rx.Component:
    ident = f"policy-{name}"
    return rx.vstack(
        field_label(label, ident),
        rx.input(
            id=ident,
            name=name,
            type="time",
            default_value=S.values.get(name, ""),
            on_change=lambda value, name=name: S.set_draft(name, value),
            width="140px",
            disabled=~S.quiet_enabled,
            **error_attrs(name, S.errors.get(name, "")),
        ),
        _error(name),
        spacing="1",
    )


def _behaviour() -> rx.Component:
    return rx.card(
        rx.vstack(
            rx.heading("Offers and quiet hours", size="3", as_="h2"),
            rx.hstack(
                rx.switch(
                    checked=S.auto_offer,
                    on_change=S.set_auto_offer,
                    id="policy-auto_offer",
                    name="auto_offer_switch",
                    **error_attrs("auto_offer", S.errors.get("auto_offer", "")),
                ),
                rx.el.label("Offer freed slots automatically", html_for="policy-auto_offer"),
                align="center",
                spacing="2",
            ),
            rx.text(
                "When off, freed slots wait for a clinician to promote or invite someone.",
                size="1",
                color_scheme="gray",
            ),
            _error("auto_offer"),
            rx.separator(width="100%"),
            rx.hstack(
                rx.switch(
                    checked=S.quiet_enabled, on_change=S.set_quiet_enabled, id="policy-quiet", name="quiet_switch"
                ),
                rx.el.label("Quiet hours (no offers sent; in each clinic's own time zone)", html_for="policy-quiet"),
                align="center",
                spacing="2",
            ),
            rx.hstack(
                _time_field("quiet_hours_start", "From"),
                _time_field("quiet_hours_end", "Until"),
                spacing="5",
            ),
            rx.text(
                "An offer made in quiet hours starts its hold when they end. Windows may cross midnight.",
                size="1",
                color_scheme="gray",
            ),
            rx.separator(width="100%"),
            rx.text("When a patient declines an offer", weight="medium", size="2"),
            rx.radio_group.root(
                rx.vstack(
                    rx.radio_group.item("Keep their place: the entry returns to waiting", value="waiting"),
                    rx.radio_group.item("Close the entry (expired)", value="expire"),
                    spacing="2",
                ),
                value=S.decline_value,
                on_change=S.set_decline,
                aria_label="When a patient declines an offer",
                **error_attrs("expire_entry_on_decline", S.errors.get("expire_entry_on_decline", "")),
            ),
            _error("expire_entry_on_decline"),
            spacing="3",
            width="100%",
        ),
        width="100%",
    )


def _preview_panel() -> rx.Component:
    """The simulated effect of the typed settings: a progress bar while it runs, then the figures (a live region)."""
    return rx.cond(
        S.preview_state != "",
        rx.card(
            rx.vstack(
                rx.heading(t("Simulated effect of these settings"), size="3", as_="h2"),
                rx.cond(
                    S.preview_state == "running",
                    rx.vstack(
                        rx.progress(
                            value=S.preview_progress,
                            max=100,
                            width="100%",
                            id="policy-preview-progress",
                            aria_label=t("Preview progress"),
                        ),
                        rx.text(
                            t("Replaying the last weeks under both settings… {p}%", p=S.preview_progress),
                            size="2",
                            color_scheme="gray",
                        ),
                        spacing="2",
                        width="100%",
                    ),
                ),
                # The outcome is announced once it is there (the progress bar is not: it would chatter).
                rx.box(
                    rx.cond(
                        S.preview_headline != "",
                        rx.text(S.preview_headline, size="4", weight="bold", id="policy-preview-figures"),
                    ),
                    rx.cond(
                        S.preview_detail != "",
                        rx.text(S.preview_detail, size="2", id="policy-preview-detail"),
                    ),
                    role="status",
                    width="100%",
                ),
                rx.text(
                    t(
                        "The simulation models the offer hold, the stop before the slot, quiet hours and the ranking "
                        "weights; the other settings do not change these figures."
                    ),
                    size="1",
                    color_scheme="gray",
                ),
                spacing="3",
                width="100%",
            ),
            id="policy-preview",
            width="100%",
        ),
    )


def _scope_bar() -> rx.Component:
    return rx.hstack(
        rx.vstack(
            field_label("Policy for", "policy-scope"),
            rx.select.root(
                rx.select.trigger(id="policy-scope", aria_label="Policy for", min_width="240px"),
                rx.select.content(rx.foreach(S.scope_options, lambda o: rx.select.item(o["name"], value=o["id"]))),
                value=S.scope,
                on_change=S.set_scope,
            ),
            spacing="1",
        ),
        rx.vstack(
            rx.badge(S.source_label, color_scheme=rx.cond(S.source == "clinic", "teal", "gray"), size="2"),
            rx.cond(S.updated != "", rx.text("Last changed ", S.updated, size="1", color_scheme="gray")),
            spacing="1",
        ),
        rx.spacer(),
        rx.cond(
            S.has_override,
            rx.button(
                rx.icon("undo-2", size=16),
                "Use practice default",
                variant="soft",
                color_scheme="gray",
                type="button",
                on_click=S.use_practice_default,
            ),
        ),
        align="end",
        spacing="4",
        wrap="wrap",
        width="100%",
    )


@rx.page(
    route="/admin/policy",
    title=f"Waitlist policy · {APP_NAME}",
    on_load=[SessionState.guard("admin"), PolicyState.load],
)
def admin_policy() -> rx.Component:
    return shell(
        "admin",
        page_header("Waitlist policy", "Rules for waitlists and offers; every change is recorded in the audit trail"),
        _scope_bar(),
        rx.cond(
            S.scope != "practice",
            rx.text(
                rx.cond(
                    S.has_override,
                    "This clinic has its own rules. Saving changes them; ‘Use practice default’ removes them.",
                    "This clinic follows the practice default. Saving here creates rules of its own.",
                ),
                size="2",
                color_scheme="gray",
            ),
        ),
        rx.cond(
            S.loaded,
            rx.form(
                rx.vstack(
                    rx.cond(
                        S.errors.contains("form"),
                        rx.callout(S.errors.get("form", ""), icon="triangle-alert", color_scheme="red", role="alert"),
                    ),
                    *[_group(title, fields) for title, fields in POLICY_GROUPS],
                    _behaviour(),
                    rx.hstack(
                        rx.cond(
                            S.changed,
                            rx.button(
                                rx.icon("flask-conical", size=16),
                                t("Preview the effect"),
                                type="button",
                                size="3",
                                variant="soft",
                                on_click=S.preview,
                                loading=S.preview_state == "running",
                                id="policy-preview-button",
                            ),
                        ),
                        rx.button(rx.icon("save", size=16), "Save policy", type="submit", size="3"),
                        justify="end",
                        wrap="wrap",
                        spacing="3",
                        width="100%",
                    ),
                    _preview_panel(),
                    spacing="4",
                    width="100%",
                ),
                on_submit=S.save,
                reset_on_submit=False,
                key=S.form_key.to_string(),
                width="100%",
            ),
            rx.center(rx.spinner(size="3"), padding="40px", width="100%"),
        ),
    )
