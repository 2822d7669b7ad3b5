"""Waitlist simulation (not a test): a month of a practice on the real engine, under each policy.

    .venv/bin/python -m bench.simulate [--seed 1] [--postgres] [--chart docs/simulation.png]

Generates the month (bench/simulate/month.py), loads it once into a database of its own (a SQLite file in a
temporary directory; with --postgres a PostgreSQL database it creates and drops, like bench/live.py), copies
that database for each policy and replays the month there on a virtual clock through the real services
(backend/waitlist/simulation.py). Prints one row per policy and writes a PNG chart of fill rate and time to fill.
Same seed, same figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from backend.waitlist.simulation import Figures, default_policies, simulate
from bench.simulate.postgres import postgres_copies

ROOT = Path(__file__).resolve().parents[2]
COLUMNS = (
    ("policy", "Policy", "{}"),
    ("fill_rate", "Filled", "{:.0%}"),
    ("median_minutes_to_fill", "Median min", "{:.0f}"),
    ("p90_minutes_to_fill", "p90 min", "{:.0f}"),
    ("offers_per_fill", "Offers/fill", "{:.1f}"),
    ("messages_per_fill", "Msgs/fill", "{:.1f}"),
    ("acceptance", "Accepted", "{:.0%}"),
    ("median_days_sooner", "Days sooner", "{:.0f}"),
    ("median_wait_days_urgent", "Wait urgent d", "{:.0f}"),
    ("median_wait_days_routine", "Wait routine d", "{:.0f}"),
    ("lost_to_hold", "Lost to hold", "{}"),
)


def _cell(value: Any, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def table(figures: Sequence[Figures], *, markdown: bool = False) -> str:
    """The figures as a text table (or a Markdown one, for the README)."""
    head = [label for _, label, _ in COLUMNS]
    rows = [[_cell(getattr(f, key), fmt) for key, _, fmt in COLUMNS] for f in figures]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(out)


def chart(figures: Sequence[Figures], path: Path, subtitle: str) -> None:
    """Two bar charts side by side: share of cancelled slots filled, and median / p90 minutes to fill."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [f.policy for f in figures]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=90)
    y = range(len(names))
    colours = ["#2f6f4f" if f.policy.startswith("Ours") else "#9a9a9a" for f in figures]
    left.barh(y, [100 * f.fill_rate for f in figures], color=colours)
    left.set_yticks(list(y), names)
    left.invert_yaxis()
    left.set_xlim(0, 120)  # room for the labels
    left.set_xticks(range(0, 101, 20))
    left.set_xlabel("cancelled slots filled (%)")
    for i, f in enumerate(figures):
        left.text(100 * f.fill_rate + 1, i, f"{f.fill_rate:.0%} ({f.filled}/{f.freed})", va="center", fontsize=8)
    median = [f.median_minutes_to_fill or 0 for f in figures]
    p90 = [f.p90_minutes_to_fill or 0 for f in figures]
    right.barh(y, p90, color="#d9d9d9", label="p90")
    right.barh(y, median, color=colours, label="median")
    right.set_yticks(list(y), [""] * len(names))
    right.invert_yaxis()
    right.set_xscale("symlog", linthresh=10)
    right.set_xlabel("minutes from cancellation to filled (log scale)")
    for i, (m, p) in enumerate(zip(median, p90, strict=True)):
        right.text(max(p, 1) * 1.1, i, f"{m:.0f} / {p:.0f}", va="center", fontsize=8)
    right.set_xlim(0, max([*p90, 10]) * 6)
    right.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=8, frameon=False)
    fig.suptitle(f"Waitlist simulation: {subtitle}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Software": None})  # no version stamp: the same figures give the same file
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--providers", type=int, default=10)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--postgres", action="store_true", help="run on PostgreSQL (own databases, dropped)")
    parser.add_argument("--chart", type=Path, default=ROOT / "docs" / "simulation.png")
    parser.add_argument("--no-chart", action="store_true")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)

    from bench.simulate.month import make_month

    world = make_month(args.seed, providers=args.providers, days=args.days)
    booked = sum(1 for a in world.appointments if a.start < world.end)
    cancelled = sum(1 for a in world.appointments if a.cancelled_at is not None)
    subtitle = (f"{args.providers} providers, 2 clinics, {args.days} days, {booked} appointments, "
                f"{cancelled} cancelled, {len(world.entries)} waitlist entries, seed {args.seed}")  # fmt: skip
    print(f"# {subtitle}; {'PostgreSQL' if args.postgres else 'SQLite'}", flush=True)
    began = time.monotonic()
    last = [-1]

    def progress(share: float) -> None:
        step = int(share * 20)
        if step != last[0]:
            last[0] = step
            print(f"\r  {share:4.0%}", end="", file=sys.stderr, flush=True)

    figures = simulate(world, default_policies(), databases=postgres_copies if args.postgres else None,
                       progress=progress)  # fmt: skip
    print(file=sys.stderr)
    if args.json:
        print(json.dumps([f.row() for f in figures], indent=2))
    else:
        print(table(figures, markdown=args.markdown))
    print(f"# {time.monotonic() - began:.0f} s for {len(figures)} policies")
    if not args.no_chart:
        chart(figures, args.chart, subtitle)
        print(f"# chart: {args.chart.relative_to(ROOT) if args.chart.is_relative_to(ROOT) else args.chart}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
