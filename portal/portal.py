"""The Reflex app: pages for patients, doctors and admins; the REST API mounted beside them."""

from __future__ import annotations

import reflex as rx

from backend.api.app import api
from portal import background, live_bridge
from portal.pages import index, login, unsubscribe  # noqa: F401 - importing registers the pages
from portal.pages.admin import clinics, home, outbox, policy, waitlists  # noqa: F401
from portal.pages.doctor import availability as doctor_availability  # noqa: F401
from portal.pages.doctor import home as doctor_home  # noqa: F401
from portal.pages.doctor import schedule as doctor_schedule  # noqa: F401
from portal.pages.doctor import waitlist as doctor_waitlist  # noqa: F401
from portal.pages.patient import appointments, find, notifications, provider, waitlist, waitlist_join  # noqa: F401
from portal.pages.patient import home as patient_home  # noqa: F401

app = rx.App(api_transformer=api)
# Committed domain events -> each tenant's LiveTenant revision -> every open page of that tenant.
live_bridge.register(app)
# Without a broker (the embedded default), offer expiry and the other beat ticks run in-process.
background.register(app)
