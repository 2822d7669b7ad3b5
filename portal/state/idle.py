"""Automatic logoff in the page: the browser reports its person's activity, and asks the server's idle clock.

The server's clock decides (backend/identity/idle.py); the browser's timers only choose when to ask it. Three
events come from the page (portal/components/idle.py):

* `activity`: the person typed, clicked, scrolled a wheel or moved the pointer (trusted input events, reported at
  most every few seconds). It moves the clock, unless the session is already idle: then it stays ended.
* `check`: a timer (when the warning is due, and when the timeout is) or the tab coming back into view. It only
  looks: a live push, a countdown or a reconnect never keeps a session alive.
* `stay`: "Stay signed in" in the "Still there?" dialog (activity, and the dialog closes).

A session found idle is revoked on the server, this tab's state is reset at once (so the next frame carries no
patient data), and the browser signs out and loads the sign-in page (portal.state.session.idle_sign_out_script).
"""

from __future__ import annotations

import asyncio

import reflex as rx

from backend.identity import idle
from backend.identity import service as identity
from portal.state.client import reset_client_tree
from portal.state.session import SessionState, idle_sign_out_script, session_token


class IdleState(SessionState):
    """The idle clock as this tab last heard it from the server (no patient data here)."""

    timeout_s: int = 0
    warn_s: int = 0
    report_s: int = 0
    # Milliseconds until the timeout when the server last answered; `sync` counts the answers (re-arms the timers).
    left_ms: int = 0
    sync: int = 0
    warning: bool = False

    async def _look(self, *, activity: bool, stay: bool = False):
        token = session_token(self)
        check = await asyncio.to_thread(identity.check_browser_session, token, activity=activity, end_if_idle=True)
        if check.actor is None:
            # Idle (or ended elsewhere: signed out in another tab, password changed): nothing of it stays here.
            path = self.router.url.path or "/"
            reset_client_tree(self)
            if check.idle_ended:
                return rx.call_script(idle_sign_out_script(check.idle_timeout_seconds, path))
            return rx.call_script(idle_sign_out_script(None, path))
        timeout = check.idle_timeout_seconds
        self.timeout_s = timeout
        self.warn_s = idle.warning_lead(timeout)
        self.report_s = idle.report_interval(timeout)
        self.left_ms = check.idle_seconds_left * 1000
        if stay:
            self.warning = False
        elif not activity:
            # One second of slack: the browser asks when the warning is due, the answer may round just above it.
            self.warning = check.idle_seconds_left <= self.warn_s + 1
        self.sync += 1
        return None

    @rx.event
    async def check(self):
        """A timer or the tab coming back: look at the idle clock, warn when it is nearly out, end it when out."""
        return await self._look(activity=False)

    @rx.event
    async def activity(self):
        """The person did something on the page: move the idle clock."""
        return await self._look(activity=True)

    @rx.event
    async def stay(self):
        """'Stay signed in': activity, and the warning closes."""
        return await self._look(activity=True, stay=True)
