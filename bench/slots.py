"""Benchmark: slot generation for 5 weekly rules over 90 days, with long booked/held lists. Prints figures."""

from __future__ import annotations

import random
import statistics
import time as clock
import uuid
from datetime import UTC, datetime, time, timedelta

from backend.scheduling.slots import Interval, WeeklyRule, generate_slots


def main() -> None:
    clinic = uuid.uuid4()
    rules = [WeeklyRule(None, clinic, "America/New_York", d, time(8), time(18), 50, 10, "in_person") for d in range(5)]
    start = datetime(2026, 1, 5, 5, tzinfo=UTC)
    end = start + timedelta(days=90)
    base = generate_slots(rules, window_start=start, window_end=end, now=start - timedelta(days=1))
    booked = [Interval(s.start, s.end) for s in base[::2]]
    rng = random.Random(1)
    held = []
    for _ in range(2000):
        t = start + timedelta(minutes=rng.randrange(0, 90 * 24 * 60))
        held.append(Interval(t, t + timedelta(minutes=50)))
    for label, kwargs in (("empty", {}), ("325 booked + 2000 held", {"booked": booked, "held": held})):
        runs = []
        for _ in range(50):
            began = clock.perf_counter()
            generate_slots(rules, window_start=start, window_end=end, now=start, include_taken=True, **kwargs)
            runs.append(clock.perf_counter() - began)
        print(f"{label:>24}: {len(base)} slots, median {statistics.median(runs) * 1000:.2f} ms, "
              f"p95 {sorted(runs)[int(len(runs) * 0.95)] * 1000:.2f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
