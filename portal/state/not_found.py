"""The 404 page: whether the visitor is signed in, so it offers their own home instead of "Sign in"."""

from __future__ import annotations

import reflex as rx

from backend.identity import service as identity
from portal.state.session import HOME_BY_ROLE, session_token


class NotFoundState(rx.State):
    """Read on mount (an unknown address has no page of its own to load): signed in or not, and where home is."""

    checked: bool = False
    home_path: str = ""

    @rx.event
    def load(self):
        actor = identity.actor_from_session(session_token(self))
        self.home_path = HOME_BY_ROLE.get(str(actor.role), "") if actor is not None else ""
        self.checked = True

    @rx.var
    def signed_in(self) -> bool:
        return self.home_path != ""
