"""Render notification texts from Jinja2 templates, per event type, channel and locale.

Layout of ``backend/notifications/templates/``::

    <locale>/_base.txt.j2        the plain-text frame: subject, e-mail text, SMS and WhatsApp parts
    <locale>/_base.html.j2       the HTML e-mail frame (autoescaped)
    <locale>/<event>.txt.j2      blocks ``subject``, ``body`` (e-mail text), ``sms``, ``whatsapp``
    <locale>/<event>.html.j2     block ``body`` of the HTML e-mail

Context keys (all strings; the caller formats dates and builds URLs):

``practice_name``       required: the practice (tenant) name
``patient_first_name``  required: the patient's first name (greeting; e-mail and WhatsApp only)
``link``                required: absolute URL into the app where the patient sees the details / acts
``provider_name``       optional: e-mail only (SMS and WhatsApp omit it on purpose)
``clinic_name``         optional: the clinic (location) name
``start_local``         appointment / slot start, pre-formatted in the clinic's zone with the zone named,
                        e.g. ``"Tue 24 Nov, 15:00 EST"``; required by every ``appointment_*`` and
                        ``waitlist_offer*`` event
``hold_until_local``    the offer's hold deadline, formatted in the clinic's zone; required by ``waitlist_offer``
``modality``            optional, ``waitlist_offer`` and ``appointment_rescheduled``: ``"in_person"`` or
                        ``"telehealth"`` (how the slot is held or the visit will take place; the templates word
                        it per locale; not PHI, so every channel shows it)
``respond_by_local``    optional, ``waitlist_reconfirm``: the re-confirmation deadline in the clinic's zone
``unsubscribe_link``    optional: shown in the e-mail footer
``valid_for``           optional, ``account_invite``, ``password_reset`` and ``registration_verify``: how long the
                        link works ("72 hours")

Anything else in the context (a reason for the visit, a diagnosis, notes...) is dropped before rendering:
templates never see it, so no channel can leak it. SMS stays within ``SMS_MAX_CHARS`` (long free-text
fields are shortened to fit), WhatsApp within ``WHATSAPP_MAX_CHARS``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateNotFound, select_autoescape

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"

EVENT_TYPES: tuple[str, ...] = (
    "appointment_booked",
    "appointment_cancelled",
    "appointment_rescheduled",
    "appointment_reminder",
    "waitlist_offer",
    "waitlist_offer_expired",
    "waitlist_entry_expired",
    "waitlist_reconfirm",
    "waitlist_entry_moved",
    "waitlist_entry_closed",
    "account_invite",
    "password_reset",
    "registration_verify",
    "registration_exists",
)
CHANNELS: tuple[str, ...] = ("email", "sms", "whatsapp", "console")
DEFAULT_LOCALE = "en"
# The languages messages are sent in: one folder of templates each ("en", "es"...), English first (the fallback).
LOCALES: tuple[str, ...] = tuple(
    sorted(
        (p.name for p in TEMPLATE_DIR.iterdir() if p.is_dir() and re.fullmatch(r"[a-z]{2,3}", p.name)),
        key=lambda name: (name != DEFAULT_LOCALE, name),
    )
)

SMS_MAX_CHARS = 320
WHATSAPP_MAX_CHARS = 1000
# Free-text fields shortened, in this order, when an SMS or WhatsApp text is too long.
_SHORTENABLE = ("clinic_name", "practice_name", "patient_first_name")
_SHORT_LEN = 24

_BASE_KEYS = ("practice_name", "patient_first_name", "link")
_OPTIONAL_KEYS = (
    "provider_name",
    "clinic_name",
    "start_local",
    "hold_until_local",
    "modality",
    "respond_by_local",
    "unsubscribe_link",
    "valid_for",
)
_REQUIRED_BY_EVENT: dict[str, tuple[str, ...]] = {
    "appointment_booked": ("start_local",),
    "appointment_cancelled": ("start_local",),
    "appointment_rescheduled": ("start_local",),
    "appointment_reminder": ("start_local",),
    "waitlist_offer": ("start_local", "hold_until_local"),
    "waitlist_offer_expired": ("start_local",),
    "waitlist_entry_expired": (),
    "waitlist_reconfirm": (),
    "waitlist_entry_moved": (),
    "waitlist_entry_closed": (),
    "account_invite": (),
    "password_reset": (),
    "registration_verify": (),
    "registration_exists": (),
}
ALLOWED_KEYS = frozenset(_BASE_KEYS + _OPTIONAL_KEYS)


class TemplateContextError(ValueError):
    """The caller passed an unknown event/channel or left out a required context key."""


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str | None


_env = Environment(
    loader=FileSystemLoader(str(TEMPLATE_DIR)),
    autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False, default=False),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=False,
)


def normalise_locale(locale: str | None) -> str:
    """``"es-MX"`` / ``"es_ES"`` -> ``"es"``; anything unsupported -> ``"en"``."""
    if not locale:
        return DEFAULT_LOCALE
    language = re.split(r"[-_]", locale.strip().lower(), maxsplit=1)[0]
    return language if language in LOCALES else DEFAULT_LOCALE


def _clean_context(event_type: str, context: dict[str, Any]) -> dict[str, str]:
    missing = [k for k in (*_BASE_KEYS, *_REQUIRED_BY_EVENT[event_type]) if not context.get(k)]
    if missing:
        raise TemplateContextError(f"{event_type}: missing context keys {', '.join(missing)}")
    cleaned = {key: "" for key in _OPTIONAL_KEYS}
    for key in ALLOWED_KEYS:
        value = context.get(key)
        if value is not None:
            cleaned[key] = str(value).strip()
    return cleaned


def _get(locale: str, event_type: str, kind: str) -> Any:
    try:
        return _env.get_template(f"{locale}/{event_type}.{kind}.j2")
    except TemplateNotFound:
        if locale == DEFAULT_LOCALE:
            raise
        return _env.get_template(f"{DEFAULT_LOCALE}/{event_type}.{kind}.j2")


def _render_part(locale: str, event_type: str, part: str, ctx: dict[str, str]) -> str:
    text = _get(locale, event_type, "txt").render(**ctx, part=part)
    if part in ("sms", "subject"):
        # One line: an SMS is counted in characters, line breaks included.
        return re.sub(r"\s+", " ", text).strip()
    # Keep paragraphs, drop runs of blank lines and trailing spaces.
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines))


def _shorten(value: str) -> str:
    return value if len(value) <= _SHORT_LEN else value[: _SHORT_LEN - 1].rstrip() + "…"


def _render_short(locale: str, event_type: str, part: str, ctx: dict[str, str], limit: int) -> str:
    text = _render_part(locale, event_type, part, ctx)
    shortened = dict(ctx)
    for key in _SHORTENABLE:
        if len(text) <= limit:
            break
        shortened[key] = _shorten(shortened[key])
        text = _render_part(locale, event_type, part, shortened)
    if len(text) > limit:
        raise TemplateContextError(f"{event_type} {part} text is {len(text)} characters, over {limit}")
    return text


def render(event_type: str, channel: str, context: dict[str, Any], locale: str = "en") -> Rendered:
    """Render one notification. ``console`` renders like e-mail (the admin reads it in the app)."""
    if event_type not in _REQUIRED_BY_EVENT:
        raise TemplateContextError(f"unknown event type {event_type!r}")
    if channel not in CHANNELS:
        raise TemplateContextError(f"unknown channel {channel!r}")
    loc = normalise_locale(locale)
    ctx = _clean_context(event_type, context)
    subject = _render_part(loc, event_type, "subject", ctx)
    if channel == "sms":
        return Rendered(subject=subject, text=_render_short(loc, event_type, "sms", ctx, SMS_MAX_CHARS), html=None)
    if channel == "whatsapp":
        text = _render_short(loc, event_type, "whatsapp", ctx, WHATSAPP_MAX_CHARS)
        return Rendered(subject=subject, text=text, html=None)
    text = _render_part(loc, event_type, "email", ctx)
    html = _get(loc, event_type, "html").render(**ctx).strip() + "\n"
    return Rendered(subject=subject, text=text, html=html)
