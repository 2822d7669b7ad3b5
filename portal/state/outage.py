"""A page whose handler cannot reach the database says so, waits for it, and then loads its data again on its own.

Reflex hands every exception a handler raises to the app's `backend_exception_handler` (portal/portal.py).
For a database outage (down, restarting, out of connections) that is `backend_exception_handler` here: instead
of "An error occurred" it shows "Cannot reach the database, retrying…", a toast that stays while the database is
away, and starts `OutageState.wait_for_database` for that browser tab. That background task probes the database
every few seconds; when it answers, the toast goes, "Connected again." shows, and the tab navigates to the page
it is on (client-side, as a click on a link would: the browser does not reload), so the page's on-load handlers
run again (the guard, the page's own load) and it fills itself. (Chaining the on-load events from the background
task instead left some pages unloaded.) A failed action changed nothing (its transaction was rolled back), which
the toast says, so the person can simply do it again. A page that could not load at all shows the same words
where it would be (`outage_notice`, under the shell's loading spinner).

Any other exception goes to Reflex's default handler, as before.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import reflex as rx
from reflex.app import default_backend_exception_handler
from reflex.event import EventSpec

from backend.celery_app import database_unavailable
from backend.db import get_engine

logger = logging.getLogger(__name__)

TOAST_ID = "database-outage"
DB_DOWN_TITLE = "Cannot reach the database, retrying…"
DB_DOWN_DETAIL = "Nothing was changed. This page loads again by itself as soon as the database answers."
DB_BACK_TITLE = "Connected again."
DB_GAVE_UP_TITLE = "The database is still unreachable. Reload the page in a few minutes."
RETRY_SECONDS = 2.0  # between two probes
GIVE_UP_SECONDS = 600.0  # a tab stops probing after this long (the message then says to reload later)


def database_reachable() -> bool:
    """One probe: does the database answer `SELECT 1` now? (The pool drops the dead connections it finds.)"""
    try:
        with get_engine().connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except Exception as exc:
        if database_unavailable(exc):
            return False
        raise
    return True


async def wait_until_reachable(
    probe: Callable[[], bool] = database_reachable,
    *,
    every: float = RETRY_SECONDS,
    give_up_after: float = GIVE_UP_SECONDS,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> bool:
    """Probe (in a thread: a probe may wait for a connect timeout) until the database answers; False if it did not
    within `give_up_after` seconds."""
    deadline = time.monotonic() + give_up_after
    while True:
        if await asyncio.to_thread(probe):
            return True
        if time.monotonic() >= deadline:
            return False
        await sleep(every)


def _path_and_query(url: str) -> str:
    """The local part of the page's URL (path and query), to navigate to it again; "/" when there is none."""
    parts = urlsplit(url)
    path = parts.path if parts.path.startswith("/") else "/"
    return f"{path}?{parts.query}" if parts.query else path


def outage_toast() -> EventSpec:
    """The message shown while the database is away: it stays until the database is back (same id: never stacked)."""
    return rx.toast.warning(
        DB_DOWN_TITLE,
        id=TOAST_ID,
        description=DB_DOWN_DETAIL,
        duration=int(GIVE_UP_SECONDS * 1000),
        position="top-center",
        close_button=False,
    )


class OutageState(rx.State):
    """Per tab: whether the database was found away, and the one background task that waits for it."""

    db_down: bool = False
    # Server-only: until when the running wait covers this tab (a later failure does not start a second one).
    _waiting_until: float = 0.0

    @rx.event(background=True)
    async def wait_for_database(self):
        async with self:
            now = time.time()
            if self._waiting_until > now:
                return None  # already waiting for it in this tab
            self._waiting_until = now + GIVE_UP_SECONDS + 30
            self.db_down = True
        back = await wait_until_reachable(database_reachable, every=RETRY_SECONDS, give_up_after=GIVE_UP_SECONDS)
        async with self:
            self.db_down = False
            self._waiting_until = 0.0
            here = _path_and_query(str(self.router.url))
        if not back:
            return [rx.toast.dismiss(TOAST_ID), rx.toast.error(DB_GAVE_UP_TITLE, position="top-center")]
        logger.info("database reachable again: reloading the page's data")
        # The page's own on-load handlers (guard, load) run again, as when it was opened: the browser navigates to
        # where it is (the frontend then sends the page's on-load events itself, as for any navigation).
        return [
            rx.toast.dismiss(TOAST_ID),
            rx.toast.success(DB_BACK_TITLE, position="top-center", duration=4000),
            rx.redirect(here, replace=True),
        ]


def outage_notice() -> rx.Component:
    """In place of a page that could not load (under the loading spinner): the same words as the toast."""
    return rx.cond(
        OutageState.db_down,
        rx.callout(
            DB_DOWN_TITLE,
            icon="database",
            color_scheme="amber",
            variant="surface",
            role="status",
            class_name="database-outage",
        ),
    )


def backend_exception_handler(exception: Exception) -> list[EventSpec]:
    """The app's handler for exceptions raised by page handlers: a database outage gets its own calm message and
    a retry; anything else Reflex's default ("An error occurred", logged with its traceback)."""
    if not database_unavailable(exception):
        return [default_backend_exception_handler(exception)]
    # No traceback, no message text (it names hosts, never a patient, but one line is enough).
    logger.warning("a page handler could not reach the database (%s): the page will retry", type(exception).__name__)
    return [outage_toast(), OutageState.wait_for_database()]
