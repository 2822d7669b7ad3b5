"""The REST API's rate limits, applied to the page handlers that call the same services (backend/ratelimit.py).

A handler calls `limited(self, SEARCH, actor)` before its work: it counts one request of that class for the
browser's address and the actor's practice, and sets the state's `rate_limited` text. When it returns True the
handler does nothing more, and the page shows `rate_limit_callout(State.rate_limited)`: a calm status line,
"Too many requests — try again in N s.", never an error or a silent no-op.
"""

from __future__ import annotations

from typing import Any

import reflex as rx

from backend import ratelimit
from backend.ratelimit import BOOKING, SEARCH, SLOTS, WAITLIST_JOIN
from backend.tenancy.context import Actor
from portal.i18n import tr

__all__ = ["BOOKING", "SEARCH", "SLOTS", "WAITLIST_JOIN", "limit_message", "limited", "rate_limit_callout"]


def limit_message(limit_class: str, *, address: str | None, practice: str | None, lang: str = "en") -> str:
    """Count one page action; "" when allowed, else the text the page shows (in the page's language)."""
    decision = ratelimit.check(limit_class, address=address or None, practice=practice)
    if decision is None or decision.allowed:
        return ""
    return tr(lang, "Too many requests — try again in {seconds} s.", seconds=decision.retry_after)


def client_address(state: Any) -> str | None:
    """The browser's address as the server saw it (Reflex's session data; never a client-sent header)."""
    try:
        return str(state.router.session.client_ip) or None
    except AttributeError:
        return None


def limited(state: Any, limit_class: str, actor: Actor) -> bool:
    """True when this action is over the limit (the state's `rate_limited` then says how long to wait)."""
    lang = getattr(state, "lang", "en")
    lang = lang if isinstance(lang, str) else "en"
    message = limit_message(limit_class, address=client_address(state), practice=str(actor.tenant_id), lang=lang)
    state.rate_limited = message
    return bool(message)


def rate_limit_callout(message: Any) -> rx.Component:
    """The calm "try again shortly" line, shown while `message` (a state var) is not empty."""
    return rx.cond(
        message != "",
        rx.callout(
            message,
            icon="timer",
            color_scheme="amber",
            variant="surface",
            role="status",
            width="100%",
            class_name="rate-limited",
        ),
    )
