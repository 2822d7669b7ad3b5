"""Without a broker the beat schedule runs in-process (the embedded default): entries still expire."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import sqlalchemy as sa

from backend.db import UnitOfWork
from backend.types import utcnow
from backend.waitlist.models import EntryStatus, WaitlistEntry
from backend.worker import run_schedule_in_process
from tests.factories import add_waitlist_entry, make_practice


def test_in_process_schedule_expires_an_entry_past_its_time_to_live(db: sa.Engine) -> None:
    p = make_practice("Harbor Mental Health", "harbor")
    entry = add_waitlist_entry(p)
    with UnitOfWork(p.system) as uow:
        row = uow.session.get(WaitlistEntry, entry.id)
        assert row is not None
        row.expires_at = utcnow() - timedelta(minutes=1)
        uow.session.add(row)
        uow.commit()

    stop = threading.Event()
    # The clock of a machine booted five seconds ago: the ten-minute entry sweep still runs on the first tick.
    runner = threading.Thread(
        target=run_schedule_in_process, args=(stop,), kwargs={"tick_seconds": 0.05, "clock": lambda: 5.0}
    )
    runner.start()
    try:
        deadline = time.monotonic() + 20
        status = None
        while time.monotonic() < deadline:
            with UnitOfWork(p.system) as uow:
                status = uow.session.get(WaitlistEntry, entry.id).status  # type: ignore[union-attr]
            if status == EntryStatus.EXPIRED:
                break
            time.sleep(0.05)
        assert status == EntryStatus.EXPIRED
    finally:
        stop.set()
        runner.join(timeout=30)
    assert not runner.is_alive()
