"""A form the browser submits itself (for the login and logout routes that set or clear the cookie)."""

from __future__ import annotations

from typing import Any

import reflex as rx


def native_form(*children: rx.Component, action: str, method: str = "post", **props: Any) -> rx.Component:
    """Render a <form> without Reflex's submit handler, so the browser posts it and follows the redirect."""
    form = rx.el.form(*children, action=action, method=method, **props)
    # Reflex adds a preventDefault submit handler to every form; drop it for a real POST.
    form.event_triggers.pop("on_submit", None)
    return form
