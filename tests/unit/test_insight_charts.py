"""The Insights charts' geometry (portal/components/charts.py), computed on the server from the weekly numbers: bars
scale to the axis' top, percent charts run 0-100, lines break where a week has no value, no data draws nothing, one
week works, the week labels thin out on narrow charts; and the page imports no chart library."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from backend.insights.service import WeekFigures
from portal.components.charts import ChartGeometry, chart_geometry, nice_top
from portal.state.insights import _charts

ROOT = Path(__file__).resolve().parents[2]
WEEKS = ["Sep 01", "Sep 08", "Sep 15"]


def _floats(geometry: ChartGeometry, attr: str, series: int = 0) -> list[float]:
    return [float(getattr(m, attr)) for m in geometry.series[series].marks]


def test_bars_scale_to_the_top_of_a_nice_axis() -> None:
    g = chart_geometry("bar", WEEKS, [("Cancelled", [4, 8, 2]), ("Filled", [3, 0, 2])])
    assert not g.empty
    assert [t.label for t in g.y_ticks] == ["0", "2", "4", "6", "8"]
    assert [float(t.pos) for t in g.y_ticks] == [100, 75, 50, 25, 0]  # from the top of the plot
    assert _floats(g, "height") == [50, 100, 25]  # 4, 8 and 2 of a top of 8
    for mark in g.series[0].marks:  # standing on the axis
        assert float(mark.y) + float(mark.height) == pytest.approx(100)
    # A zero draws no bar; the bars of a week sit side by side inside the week's band (a third of the width each).
    assert len(g.series[1].marks) == 2
    first, second = g.series[0].marks[0], g.series[1].marks[0]
    assert 0 < float(first.x) < float(first.x) + float(first.width) <= float(second.x)
    assert float(second.x) + float(second.width) < 100 / 3
    assert g.series[0].marks[1].title == "Sep 08 · Cancelled: 8"


def test_percent_charts_run_from_0_to_100_whatever_the_values() -> None:
    g = chart_geometry("line", WEEKS, [("Fill rate", [50.0, None, 25.0]), ("Acceptance", [10.0, 20.0, 30.0])],
                       unit="%")  # fmt: skip
    assert [t.label for t in g.y_ticks] == ["0%", "25%", "50%", "75%", "100%"]
    assert [(m.x, m.y) for m in g.series[1].marks] == [("16.667", "90"), ("50", "80"), ("83.333", "70")]
    assert g.series[0].marks[0].title == "Sep 01 · Fill rate: 50%"


def test_a_line_breaks_where_a_week_has_no_value_and_its_points_are_dots() -> None:
    g = chart_geometry("line", WEEKS, [("Fill rate", [50.0, None, 25.0])], unit="%")
    path = g.series[0].path
    assert path.count("M") == 2 and "L" not in path  # two single points, not joined across the empty week
    assert len(g.series[0].marks) == 2
    assert all(m.d.startswith("M") and m.d.endswith("l0 0") for m in g.series[0].marks)
    joined = chart_geometry("line", WEEKS, [("Fill rate", [50.0, 40.0, 25.0])], unit="%").series[0].path
    assert joined.count("M") == 1 and joined.count("L") == 2


def test_no_data_draws_nothing() -> None:
    for weeks, values in (([], []), (WEEKS, [0, 0, 0]), (WEEKS, [None, None, None])):
        g = chart_geometry("bar", weeks, [("A", values), ("B", values)])
        assert g.empty
        assert [s.marks for s in g.series] == [[], []]  # one (empty) series each: the page indexes them
        assert g.x_ticks == [] and g.y_ticks == []


def test_a_single_week_works() -> None:
    bars = chart_geometry("bar", ["Sep 01"], [("No-shows", [1]), ("Late", [3])])
    assert [t.label for t in bars.y_ticks] == ["0", "1", "2", "3"]  # whole numbers: no 0.5 ticks
    assert [float(t.pos) for t in bars.x_ticks] == [50]
    assert bars.x_ticks[0].show == "3"
    assert float(bars.series[1].marks[0].height) == 100
    # The week's bars are centred, and not as wide as the whole chart.
    left, right = bars.series[0].marks[0], bars.series[1].marks[0]
    assert float(left.x) - 0 == pytest.approx(100 - (float(right.x) + float(right.width)))
    assert float(right.x) + float(right.width) - float(left.x) <= 25
    line = chart_geometry("line", ["Sep 01"], [("Hours", [1.5])])
    assert [t.label for t in line.y_ticks] == ["0", "0.5", "1", "1.5"]
    assert line.series[0].path == "M50 0"  # a single point, at the top of its axis
    assert len(line.series[0].marks) == 1


@pytest.mark.parametrize(
    ("highest", "whole", "top", "step"),
    [(1, True, 1, 1), (2, True, 2, 1), (5, True, 6, 2), (7, True, 8, 2), (10, True, 10, 5), (38, True, 40, 10),
     (0.3, False, 0.3, 0.1), (2.3, False, 3, 1), (137, True, 150, 50), (0, True, 1, 1)],
)  # fmt: skip
def test_the_value_axis_has_about_four_round_steps(highest: float, whole: bool, top: float, step: float) -> None:
    found_top, found_step = nice_top(highest, whole)
    assert (found_top, found_step) == (pytest.approx(top), pytest.approx(step))
    assert found_top >= highest


def test_week_labels_thin_out_on_narrow_charts_and_the_latest_week_is_always_labelled() -> None:
    def shown(count: int, tiers: str) -> list[int]:
        g = chart_geometry("bar", [f"W{i}" for i in range(count)], [("A", [1] * count)])
        return [i for i, t in enumerate(g.x_ticks) if t.show in tiers]

    assert shown(12, "123") == list(range(12))  # a wide chart: every week of the default 12
    assert shown(12, "23") == [1, 3, 5, 7, 9, 11]  # a middle one: every other week
    assert shown(12, "3") == [3, 7, 11]  # a phone: every fourth
    for count in (1, 5, 12, 30, 105):
        wide, mid, narrow = shown(count, "123"), shown(count, "23"), shown(count, "3")
        assert count - 1 in narrow
        assert set(narrow) <= set(mid) <= set(wide)
        assert len(wide) <= 12 and len(mid) <= 7 and len(narrow) <= 4


def test_the_four_charts_are_drawn_from_the_weeks_of_the_table() -> None:
    monday = date(2026, 9, 7)
    weeks = [
        WeekFigures(week_start=monday, cancellations=4, filled=2, filled_from_waitlist=1, fill_rate=0.5,
                    acceptance_rate=0.25, median_minutes_to_fill=90, offers_per_fill=2, no_shows=1,
                    late_cancellations=3),
        WeekFigures(week_start=monday + timedelta(weeks=1)),
    ]  # fmt: skip
    refills, rates, speed, attendance = _charts(weeks)
    assert [len(s.marks) for s in refills.series] == [1, 1, 1]
    assert [t.label for t in refills.x_ticks] == ["Sep 07", "Sep 14"]
    assert [m.title for s in rates.series for m in s.marks] == ["Sep 07 · Fill rate: 50%", "Sep 07 · Acceptance: 25%"]
    assert [m.title for s in speed.series for m in s.marks] == [
        "Sep 07 · Median hours to fill: 1.5", "Sep 07 · Offers per fill: 2"]  # fmt: skip
    assert [len(s.marks) for s in attendance.series] == [1, 1]
    assert all(len(s.marks) == 0 for s in _charts([])[0].series) and _charts([])[0].empty


def test_no_page_uses_the_chart_library() -> None:
    """recharts made the Insights route's own bundle 447 KB (58 KB without): the charts are SVG from the server."""
    users = [p for p in (ROOT / "portal").rglob("*.py") if "recharts" in p.read_text(encoding="utf-8")]
    assert users == []
