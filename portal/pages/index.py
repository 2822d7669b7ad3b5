"""The root sends each visitor to their home, or to the login."""

from __future__ import annotations

import reflex as rx

from portal.components.shell import APP_NAME, loading
from portal.state.session import SessionState


@rx.page(route="/", title=APP_NAME, on_load=SessionState.go_home)
def index() -> rx.Component:
    return loading()
