"""Light charts without a chart library: grouped bars and lines drawn as inline SVG, their axes and legend as HTML.

The server computes the geometry (`chart_geometry`: bar rectangles, line paths, the ticks of both axes) from the
same weekly numbers the tables show; the browser only places it. The plot is an SVG whose user space is 0-100 on
both axes stretched to its box (preserveAspectRatio="none"), so it fills any width; strokes and the points of a
line keep their size on screen (vector-effect: non-scaling-stroke; a point is a zero-length round-capped stroke),
and the text stays HTML, the page's own size at every width. The week labels thin out as the chart narrows (a
container query): every label that fits at its width, the latest week always labelled.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import reflex as rx

Kind = Literal["bar", "line"]

PLOT_HEIGHT = "170px"
Y_AXIS_WIDTH = "44px"
# Most week labels shown (at least the latest week's) on a chart of a given width: 640 px and more, 400-640, less.
MAX_LABELS_WIDE, MAX_LABELS_MID, MAX_LABELS_NARROW = 12, 7, 4
MID_PX, WIDE_PX = 400, 640
# A week's band: the bars of its group take this share of it (the rest is the gap between weeks), at most
# MAX_GROUP percent of the plot's width (one or two weeks: bars of a sensible width, not walls).
GROUP_SHARE = 0.8
MAX_GROUP = 24.0
BAR_SHARE = 0.85  # of a bar's slot in its group (the rest is the gap between the bars of a group)


@dataclass
class Mark:
    """A bar (x, y, width, height: its rectangle) or a line's point (x, y; d draws it as a dot), in the plot's
    0-100 user space (y down); title: what a pointer over it shows."""

    x: str = "0"
    y: str = "0"
    width: str = "0"
    height: str = "0"
    d: str = ""
    title: str = ""


@dataclass
class Series:
    """One series: its bars, or its line (path: the SVG path of its line, broken where a week has no value) and
    points."""

    marks: list[Mark] = field(default_factory=list)
    path: str = ""


@dataclass
class Tick:
    """An axis label at pos percent of the plot (from the left for weeks, from the top for values); show: the
    narrowest chart that shows it, "3" every chart, "2" from MID_PX, "1" from WIDE_PX, "0" none."""

    pos: str = "0"
    label: str = ""
    show: str = "3"


@dataclass
class ChartGeometry:
    series: list[Series] = field(default_factory=list)
    x_ticks: list[Tick] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    empty: bool = True  # nothing to draw: no week, or no week with a value above zero


def _n(value: float) -> str:
    """A coordinate as SVG text: at most 3 decimals, no trailing zeros."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _value(value: float, unit: str) -> str:
    text = f"{round(value, 2):g}"
    return f"{text}%" if unit == "%" else f"{text} {unit}" if unit else text


def nice_top(highest: float, whole: bool) -> tuple[float, float]:
    """The top of the value axis and its step: about 4 steps of 1, 2, 2.5 or 5 times a power of ten (whole numbers
    only when every value is a whole number), the top at or above `highest`."""
    if highest <= 0:
        return 1.0, 1.0
    magnitude = 10 ** math.floor(math.log10(highest / 4))
    step = magnitude * 10
    for multiple in (1, 2, 2.5, 5, 10):
        candidate = multiple * magnitude
        if whole and (candidate < 1 or candidate != int(candidate)):
            continue
        if candidate * 4 >= highest:
            step = candidate
            break
    step = max(step, 1.0) if whole else step
    return math.ceil(round(highest / step, 9)) * step, step


def _label_steps(count: int) -> tuple[int, int, int]:
    """Every how many weeks a label shows on a wide, a middle and a narrow chart; each a multiple of the one before
    (a label shown on a narrow chart is shown on a wider one too)."""
    wide = max(1, math.ceil(count / MAX_LABELS_WIDE))
    mid = wide * max(1, math.ceil(math.ceil(count / wide) / MAX_LABELS_MID))
    narrow = mid * max(1, math.ceil(math.ceil(count / mid) / MAX_LABELS_NARROW))
    return wide, mid, narrow


def _x_ticks(labels: Sequence[str]) -> list[Tick]:
    count = len(labels)
    wide, mid, narrow = _label_steps(count)
    ticks = []
    for i, label in enumerate(labels):
        back = count - 1 - i  # counted from the latest week, which is always labelled
        show = "3" if back % narrow == 0 else "2" if back % mid == 0 else "1" if back % wide == 0 else "0"
        ticks.append(Tick(pos=_n((i + 0.5) * 100 / count), label=label, show=show))
    return ticks


def chart_geometry(
    kind: Kind,
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    *,
    unit: str = "",
) -> ChartGeometry:
    """The geometry of a chart of one value per week per series: `labels` names the weeks (x), `series` is (name,
    values) with a value per week (None: nothing to show that week, a gap in a line). Bars are grouped by week;
    lines join the weeks' points. unit "%": a percent axis 0-100 whatever the values."""
    count = len(labels)
    values = [v for _, vs in series for v in vs if v is not None]
    if count == 0 or not any(v > 0 for v in values):
        return ChartGeometry(series=[Series() for _ in series])
    if unit == "%":
        top, step = 100.0, 25.0
    else:
        top, step = nice_top(max(values), whole=all(float(v).is_integer() for v in values))
    y_ticks = [
        Tick(pos=_n(100 - 100 * i * step / top), label=_value(round(i * step, 9), "%" if unit == "%" else ""))
        for i in range(round(top / step) + 1)
    ]

    def height(value: float) -> float:
        return min(max(value, 0.0), top) * 100 / top

    band = 100 / count
    group = min(band * GROUP_SHARE, MAX_GROUP)
    slot = group / max(len(series), 1)
    drawn = []
    for j, (name, weekly) in enumerate(series):
        marks, path, pen_down = [], [], False
        for i, value in enumerate(weekly[:count]):
            if value is None:
                pen_down = False
                continue
            title = f"{labels[i]} · {name}: {_value(value, unit)}"
            if kind == "bar":
                if value > 0:
                    h = height(value)
                    left = i * band + (band - group) / 2 + j * slot + slot * (1 - BAR_SHARE) / 2
                    marks.append(Mark(x=_n(left), y=_n(100 - h), width=_n(slot * BAR_SHARE), height=_n(h), title=title))
                continue
            x, y = _n((i + 0.5) * band), _n(100 - height(value))
            path.append(f"{'L' if pen_down else 'M'}{x} {y}")
            pen_down = True
            marks.append(Mark(x=x, y=y, d=f"M{x} {y}l0 0", title=title))
        drawn.append(Series(marks=marks, path="".join(path)))
    return ChartGeometry(series=drawn, x_ticks=_x_ticks(labels), y_ticks=y_ticks, empty=False)


# The page's side: where the geometry is drawn.

_THIN_LABELS = {
    "& .chart-x[data-show='0']": {"display": "none"},
    f"@container (max-width: {WIDE_PX - 0.02}px)": {"& .chart-x[data-show='1']": {"display": "none"}},
    f"@container (max-width: {MID_PX - 0.02}px)": {"& .chart-x[data-show='1'], & .chart-x[data-show='2']": {
        "display": "none"}},
}  # fmt: skip
_AXIS_TEXT = {"font_size": "12px", "line_height": "16px", "color": rx.color("gray", 11), "white_space": "nowrap"}


def _legend(kind: Kind, names: Sequence[str], colours: Sequence[rx.Color]) -> rx.Component:
    def item(name: str, colour: rx.Color) -> rx.Component:
        swatch = (
            rx.box(width="10px", height="10px", border_radius="2px", background=colour)
            if kind == "bar"
            else rx.box(width="16px", height="3px", border_radius="2px", background=colour)
        )
        return rx.hstack(swatch, rx.text(name, size="1"), align="center", spacing="1")

    return rx.hstack(*[item(n, c) for n, c in zip(names, colours, strict=True)], spacing="4", wrap="wrap",
                     justify="center", width="100%")  # fmt: skip


# The renderers below take vars of the dataclasses above (typed Any: their fields are vars in the page).


def _y_label(tick: Any) -> rx.Component:
    return rx.text(tick.label, position="absolute", right="6px", top=tick.pos + "%", transform="translateY(-50%)",
                   **_AXIS_TEXT)  # fmt: skip


def _x_label(tick: Any) -> rx.Component:
    """A week's label, centred under its week; shown or not by the chart's width (_THIN_LABELS)."""
    return rx.text(tick.label, class_name="chart-x", custom_attrs={"data-show": tick.show}, position="absolute",
                   left=tick.pos + "%", top="4px", transform="translateX(-50%)", **_AXIS_TEXT)  # fmt: skip


def _series(kind: Kind, geometry: Any, index: int, colour: rx.Color) -> rx.Component:
    one = geometry.series[index]
    if kind == "bar":
        return rx.el.g(
            rx.foreach(
                one.marks,
                lambda m: rx.el.rect(rx.el.title(m.title), x=m.x, y=m.y, width=m.width, height=m.height),
            ),
            style={"fill": colour},
        )
    line = {"fill": "none", "stroke": colour, "vector_effect": "non-scaling-stroke", "stroke_linecap": "round",
            "stroke_linejoin": "round"}  # fmt: skip
    return rx.el.g(
        rx.el.path(d=one.path, style={**line, "stroke_width": "2px"}),
        rx.foreach(one.marks, lambda m: rx.el.path(rx.el.title(m.title), d=m.d, style={**line, "stroke_width": "7px"})),
    )


def chart(
    kind: Kind,
    geometry: Any,
    names: Sequence[str],
    colours: Sequence[rx.Color],
    *,
    empty_text: str = "Nothing to draw for these weeks.",
) -> rx.Component:
    """The chart of a state's ChartGeometry var (`geometry`), its series named `names` (the legend) in `colours`,
    in that order. As wide as its container (a CSS container: the week labels follow its width)."""
    grid_line = {"stroke": rx.color("gray", 6), "stroke_dasharray": "3 3", "vector_effect": "non-scaling-stroke"}
    plot = rx.box(
        rx.el.svg(
            rx.foreach(
                geometry.y_ticks,
                lambda t: rx.el.line(x1="0", x2="100", y1=t.pos, y2=t.pos, style=grid_line),
            ),
            *[_series(kind, geometry, i, c) for i, c in enumerate(colours)],
            view_box="0 0 100 100",
            preserve_aspect_ratio="none",
            width="100%",
            height="100%",
            style={"position": "absolute", "inset": "0", "overflow": "visible"},
            aria_hidden="true",
        ),
        position="relative",
        height=PLOT_HEIGHT,
        border_left=f"1px solid {rx.color('gray', 8)}",
        border_bottom=f"1px solid {rx.color('gray', 8)}",
    )
    y_axis = rx.box(
        rx.foreach(geometry.y_ticks, _y_label),
        position="relative",
        height=PLOT_HEIGHT,
    )
    x_axis = rx.box(
        rx.foreach(geometry.x_ticks, _x_label),
        position="relative",
        height="22px",
    )
    drawing = rx.box(
        rx.grid(
            y_axis,
            plot,
            rx.box(),
            x_axis,
            grid_template_columns=f"{Y_AXIS_WIDTH} minmax(0, 1fr)",
            padding_top="8px",
            padding_right="16px",
            width="100%",
            style=_THIN_LABELS,
        ),
        _legend(kind, names, colours),
        width="100%",
    )
    return rx.box(
        rx.cond(
            geometry.empty,
            rx.center(rx.text(empty_text, size="2", color_scheme="gray"), height="200px", width="100%"),
            drawing,
        ),
        width="100%",
        style={"container_type": "inline-size"},
    )
