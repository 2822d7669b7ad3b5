"""A link that looks like a button: one element, one tab stop (a link wrapping a button is two of each)."""

from __future__ import annotations

from typing import Any

import reflex as rx
from reflex_components_core.react_router.dom import ReactRouterLink


def button_link(*children: rx.Component | str | rx.Var, href: str | rx.Var, **button_props: Any) -> rx.Component:
    """An <a href> (client-side navigation, like rx.link) drawn as a Radix button with `button_props` (size,
    variant, color_scheme...): the button renders its child in its place (asChild), so no button is in the DOM."""
    return rx.button(ReactRouterLink.create(*children, to=href), as_child=True, **button_props)
