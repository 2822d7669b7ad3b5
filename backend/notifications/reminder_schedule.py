"""When appointment reminders are due: pure logic over UTC instants, no I/O.

A practice sends reminders at up to four offsets before the start (default 48 h and 2 h). An offset is *due*
once its moment (start - offset) has passed. Rules, in order:

- an appointment that has started gets nothing;
- an offset whose moment was already past when the appointment was booked is skipped (the booking
  confirmation said it all) and marked done, so it never fires later;
- when several offsets are due at once (the worker was down across them) only the nearest one to the start is
  sent; the older ones are marked done with it, so a patient never gets a stale burst of reminders.

Every instant is an aware UTC datetime, so daylight-saving changes cannot move a reminder.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

MIN_OFFSET_MINUTES = 15
MAX_OFFSET_MINUTES = 14 * 24 * 60
MAX_OFFSETS = 4
FIELD = "reminder_offsets_minutes"


def check_offsets(values: Iterable[object]) -> list[int]:
    """Validate reminder offsets (0-4 whole minutes, each 15 min .. 14 days, no duplicates); return them
    sorted earliest reminder first. Raises ValueError with a message a person can act on."""
    offsets: list[int] = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("Each reminder offset must be a whole number of minutes.")
        offsets.append(value)
    if len(offsets) > MAX_OFFSETS:
        raise ValueError(f"At most {MAX_OFFSETS} reminders per appointment.")
    for offset in offsets:
        if not MIN_OFFSET_MINUTES <= offset <= MAX_OFFSET_MINUTES:
            raise ValueError(
                f"Each reminder must be between {MIN_OFFSET_MINUTES} minutes and 14 days "
                f"({MAX_OFFSET_MINUTES} minutes) before the appointment; {offset} is not."
            )
    if len(set(offsets)) != len(offsets):
        raise ValueError("Each reminder offset may appear only once.")
    return sorted(offsets, reverse=True)


def parse_offsets(text: str) -> list[int]:
    """Read offsets from a comma-separated setting such as "2880,120" (empty: no reminders)."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    try:
        values = [int(part) for part in parts]
    except ValueError:
        raise ValueError(
            f"reminder offsets must be whole minutes separated by commas, e.g. 2880,120; got {text!r}"
        ) from None
    return check_offsets(values)


@dataclass(frozen=True)
class ReminderDecision:
    """What a sweep does for one appointment now."""

    send: int | None  # the offset whose reminder goes out now, if any
    mark_done: tuple[int, ...]  # offsets to record as done (the one sent, and any skipped), largest first


NOTHING = ReminderDecision(send=None, mark_done=())


def decide_reminder(
    *,
    now: datetime,
    start: datetime,
    created_at: datetime,
    offsets: Iterable[int],
    done: Collection[int] = (),
) -> ReminderDecision:
    """Decide which reminder (if any) to send for one appointment now, and which offsets to mark done."""
    for name, value in (("now", now), ("start", start), ("created_at", created_at)):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"{name} must be an aware datetime")
    if start <= now:
        return NOTHING
    passed = sorted((o for o in set(offsets) if start - timedelta(minutes=o) <= now), reverse=True)
    todo = tuple(o for o in passed if o not in done)
    if not todo:
        return NOTHING
    nearest = passed[-1]  # the smallest offset whose moment has passed
    # Booked before that moment: the reminder is owed. Booked after it: every passed offset is skipped
    # (a larger offset's moment is earlier still).
    owed = created_at < start - timedelta(minutes=nearest) and nearest not in done
    return ReminderDecision(send=nearest if owed else None, mark_done=todo)
