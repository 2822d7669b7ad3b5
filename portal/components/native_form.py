"""A form the browser submits itself (for the login and logout routes that set or clear the cookie)."""

from __future__ import annotations

from typing import Any

import reflex as rx
from reflex_base.vars.base import LiteralVar, Var

from portal.state.client import FORGET_CLIENT_TOKEN_JS


def native_form(
    *children: rx.Component,
    action: str,
    method: str = "post",
    forget_client: bool = False,
    notify: rx.EventHandler | rx.EventSpec | None = None,
    **props: Any,
) -> rx.Component:
    """Render a <form> without Reflex's submit handler, so the browser posts it and follows the redirect.

    `forget_client`: as the form posts, the browser forgets this tab's Reflex client token, so the page the post
    leads to starts a new client with empty state (see portal.state.client). `notify`: an event sent to the
    server as the form posts, without waiting for it (the post goes ahead whatever becomes of the event).
    """
    form = rx.el.form(*children, action=action, method=method, **props)
    # Reflex adds a preventDefault submit handler to every form; drop it for a real POST.
    form.event_triggers.pop("on_submit", None)
    statements: list[str] = []
    var_data = None
    if forget_client:
        statements.append(f"{FORGET_CLIENT_TOKEN_JS};")
    if notify is not None:
        # Reflex's own rendering of the event, called as-is; it never prevents the native submit.
        chain = LiteralVar.create(rx.el.form(on_submit=notify).event_triggers["on_submit"])
        statements.append(f"try {{ ({chain})(_e); }} catch (_err) {{}}")
        var_data = chain._get_all_var_data()
    if statements:
        # A plain React onSubmit: runs synchronously before the browser posts the form.
        form.custom_attrs["onSubmit"] = Var(_js_expr=f"((_e) => {{ {' '.join(statements)} }})", _var_data=var_data)
    return form
