"""The virtual clock of the waitlist simulator: seen inside its block and its context only."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest

from backend.types import utcnow, virtual_clock

MOMENT = datetime(2031, 3, 4, 5, 6, 7, tzinfo=UTC)


def test_utcnow_reads_the_virtual_clock_inside_the_block_only() -> None:
    with virtual_clock(lambda: MOMENT):
        assert utcnow() == MOMENT
    assert abs(utcnow() - datetime.now(UTC)) < timedelta(minutes=1)


def test_the_clock_is_restored_after_an_error_and_nests() -> None:
    later = MOMENT + timedelta(hours=1)
    with pytest.raises(RuntimeError), virtual_clock(lambda: MOMENT):
        with virtual_clock(lambda: later):
            assert utcnow() == later
        assert utcnow() == MOMENT
        raise RuntimeError
    assert utcnow().year != MOMENT.year


def test_other_threads_and_tasks_keep_the_real_time() -> None:
    seen: list[datetime] = []
    with virtual_clock(lambda: MOMENT):
        thread = threading.Thread(target=lambda: seen.append(utcnow()))
        thread.start()
        thread.join()
    assert seen and seen[0].year != MOMENT.year

    async def elsewhere() -> datetime:
        return utcnow()

    async def main() -> tuple[datetime, datetime]:
        other = asyncio.create_task(elsewhere())  # created before the clock is set: real time
        with virtual_clock(lambda: MOMENT):
            inside = utcnow()
            return inside, await other

    inside, outside = asyncio.run(main())
    assert inside == MOMENT and outside.year != MOMENT.year


def test_an_offset_clock_is_returned_in_utc_and_a_naive_one_refused() -> None:
    with virtual_clock(lambda: MOMENT.astimezone(timezone(timedelta(hours=-5)))):
        assert utcnow().tzinfo == UTC and utcnow() == MOMENT
    with virtual_clock(lambda: MOMENT.replace(tzinfo=None)), pytest.raises(ValueError, match="naive"):
        utcnow()
