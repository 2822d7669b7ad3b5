"""The Reflex app: pages for patients, doctors and admins; the REST API mounted beside them."""

from __future__ import annotations

from typing import Any

import reflex as rx

from backend.api.app import api
from backend.api.edge import edge_transformer, socket_origin_allowed
from backend.logging_config import configure_logging
from backend.observability.logs import request_log_transformer
from portal import background, live_bridge
from portal.observability import EventRequestIdMiddleware
from portal.pages import account_mfa, index, login, unsubscribe  # noqa: F401 - importing registers the pages
from portal.pages import legal as legal_pages  # noqa: F401
from portal.pages import not_found as page_not_found  # noqa: F401
from portal.pages import onboarding as onboarding_pages  # noqa: F401
from portal.pages.admin import audit, clinics, home, insights, outbox, policy, waitlists  # noqa: F401
from portal.pages.admin import payments as admin_payments  # noqa: F401 - and /doctor/payments
from portal.pages.admin import people as admin_people  # noqa: F401
from portal.pages.doctor import availability as doctor_availability  # noqa: F401
from portal.pages.doctor import home as doctor_home  # noqa: F401
from portal.pages.doctor import schedule as doctor_schedule  # noqa: F401
from portal.pages.doctor import waitlist as doctor_waitlist  # noqa: F401
from portal.pages.patient import appointments, find, notifications, provider, waitlist, waitlist_join  # noqa: F401
from portal.pages.patient import home as patient_home  # noqa: F401
from portal.pages.patient import payments as patient_payments  # noqa: F401
from portal.state import outage

# Before anything logs: JSON lines (or console lines in the embedded mode), request ids, error tracking if configured.
configure_logging()


class _EdgeApp(rx.App):
    """The Reflex app wrapped, outermost, in the edge middleware (backend/api/edge.py).

    api_transformer would leave Reflex's own top-level Starlette (and its CORS middleware) outside the wrapper,
    so CORS preflights and its responses would miss the security headers; wrapping the finished ASGI app here
    covers every response: pages, static files, /api, /auth and the event socket.
    """

    def __call__(self) -> Any:
        return request_log_transformer(edge_transformer(super().__call__()))  # outside the edge: its refusals too

    def _apply_decorated_pages(self) -> None:
        """Register the @rx.page pages once per app, not once per compile.

        `reflex run --env prod` compiles in the supervisor, then forks the backend worker, whose first request
        compiles again: re-adding every page logged "Page ... is being redefined" for each of them. The worker
        inherits the pages with the fork; a dev hot reload imports a new module, hence a new app, and applies
        them afresh.
        """
        if getattr(self, "_waitwell_pages_applied", False):
            return
        super()._apply_decorated_pages()
        self._waitwell_pages_applied = True


# A page handler that cannot reach the database says so and retries (portal/state/outage.py); anything else as before.
# assets/a11y.css: WCAG 2.1 AA contrast, focus rings and the skip link, after the Radix Themes stylesheet.
# assets/phone.css: tables marked stack-on-phone become stacked cards below 768 px (portal/components/responsive.py).
app = _EdgeApp(
    api_transformer=api,
    backend_exception_handler=outage.backend_exception_handler,
    stylesheets=["/a11y.css", "/phone.css"],
)
# The socket server checks Origin itself too (the middleware already refused foreign ones): same rule.
if app.sio is not None:
    app.sio.eio.cors_allowed_origins = socket_origin_allowed
# Committed domain events -> each tenant's LiveTenant revision -> every open page of that tenant.
live_bridge.register(app)
# A request id (and, once the session is read, the actor's ids) on the log lines of every event.
app.add_middleware(EventRequestIdMiddleware())
# Without a broker (the embedded default), offer expiry and the other beat ticks run in-process.
background.register(app)
