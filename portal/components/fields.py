"""Form field pieces with real <label for> association (screen readers and tests find inputs by label)."""

from __future__ import annotations

from typing import Any

import reflex as rx


def field_label(text: str, for_id: str) -> rx.Component:
    return rx.el.label(
        text,
        html_for=for_id,
        font_size="var(--font-size-2)",
        font_weight="500",
        color=rx.color("gray", 12),
    )


def labelled_select(
    label: str, ident: str, options: rx.Var, value: rx.Var, on_change: Any, *, min_width: str = "170px"
) -> rx.Component:
    """A filter: a label above a select whose options are {"id", "name"} dicts."""
    return rx.vstack(
        field_label(label, ident),
        rx.select.root(
            # Named by the <label for> above (not aria-label): the name a screen reader says is the visible one.
            rx.select.trigger(id=ident, min_width=min_width),
            rx.select.content(rx.foreach(options, lambda o: rx.select.item(o["name"], value=o["id"]))),
            value=value,
            on_change=on_change,
        ),
        spacing="1",
    )


def error_id(key: str) -> str:
    """The id of a field's error message (tests and aria-describedby refer to it)."""
    return f"err-{key}"


def field_error(key: str, message: rx.Var) -> rx.Component:
    """A field's error message, in a live region that is always in the page, so a new message is announced.

    Point the field at it with `error_attrs`: the message is then its description, and the field is marked invalid.
    """
    return rx.box(
        rx.cond(
            message != "",
            rx.text(
                rx.icon("circle-alert", size=14, display="inline", vertical_align="-2px", margin_right="4px"),
                message,
                color_scheme="red",
                size="2",
            ),
        ),
        id=error_id(key),
        aria_live="assertive",
        aria_atomic="true",
        width="100%",
    )


def error_attrs(key: str, message: rx.Var, *described_by: str) -> dict[str, Any]:
    """aria-invalid while `message` is set, and aria-describedby naming the error (after any hints)."""
    return {
        "aria_invalid": rx.cond(message != "", "true", "false"),
        "aria_describedby": " ".join([*described_by, error_id(key)]),
    }
