"""Form field pieces with real <label for> association (screen readers and tests find inputs by label)."""

from __future__ import annotations

import reflex as rx


def field_label(text: str, for_id: str) -> rx.Component:
    return rx.el.label(
        text,
        html_for=for_id,
        font_size="var(--font-size-2)",
        font_weight="500",
        color=rx.color("gray", 12),
    )
