"""Quiet hours: which notifications may wait for them, when they end, and the practice's rule for e-mail in them.

The outbox (backend.notifications.outbox) reads these rules when it records a notification; the practice's
settings page (backend.notifications.reminders) writes the rule.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlmodel import select

from backend.db import UnitOfWork
from backend.notifications.models import Channel, NotificationSettings

# Events a patient may be spared in their quiet hours (sent when the hours end); the rest (confirmations,
# cancellations) are sent at once. By the practice's rule (notification_settings.quiet_hours_email_now, on by
# default) e-mail, which makes no sound, still goes at once and only texts wait.
QUIET_HOURS_EVENTS = frozenset({"waitlist_offer", "appointment_reminder"})
SILENT_CHANNELS = frozenset({Channel.EMAIL, Channel.CONSOLE})


def quiet_hours_end(start: time | None, end: time | None, moment: datetime, zone: str) -> datetime:
    """The end of the quiet hours containing `moment`, read in `zone` (or `moment` when outside them)."""
    if start is None or end is None or start == end:
        return moment
    local = moment.astimezone(ZoneInfo(zone))
    now = local.time()
    inside = start <= now < end if start < end else now >= start or now < end
    if not inside:
        return moment
    until = datetime.combine(local.date(), end, tzinfo=ZoneInfo(zone))
    if until <= local:
        until += timedelta(days=1)
    return until.astimezone(moment.tzinfo)


def is_quiet_event(event_type: str) -> bool:
    return event_type in QUIET_HOURS_EVENTS


def quiet_hours_email_now(uow: UnitOfWork) -> bool:
    """The practice's quiet-hours rule: True (the default) lets e-mail go at once while texts wait."""
    row = uow.session.exec(select(NotificationSettings)).first()
    return True if row is None else bool(row.quiet_hours_email_now)
