"""The Reflex app: pages for patients, doctors and admins; the REST API mounted beside them."""

from __future__ import annotations

import reflex as rx

from backend.api.app import api
from portal.pages import index, login  # noqa: F401 - importing registers the pages
from portal.pages.admin import clinics, home  # noqa: F401
from portal.pages.doctor import availability as doctor_availability  # noqa: F401
from portal.pages.doctor import home as doctor_home  # noqa: F401
from portal.pages.doctor import schedule as doctor_schedule  # noqa: F401
from portal.pages.patient import appointments, find, provider, waitlist_join  # noqa: F401
from portal.pages.patient import home as patient_home  # noqa: F401

app = rx.App(api_transformer=api)
