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
            rx.select.trigger(id=ident, aria_label=label, min_width=min_width),
            rx.select.content(rx.foreach(options, lambda o: rx.select.item(o["name"], value=o["id"]))),
            value=value,
            on_change=on_change,
        ),
        spacing="1",
    )
