"""/admin/insights: refill of cancelled slots, offers, no-shows and late cancellations by week, clinic and provider,
and the outbox's dead letters, for a range of days and optionally one clinic or provider."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import date

import reflex as rx

from backend.db import UnitOfWork, reads_only
from backend.errors import DomainError
from backend.insights import service as insights
from portal.components.charts import ChartGeometry, Series, chart_geometry
from portal.state.admin import AdminState
from portal.state.session import SESSION_ENDED

ALL = "all"


def _day(value: str) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f}%"


def _number(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    return f"{value:g}{unit}"


def _duration(minutes: float | None) -> str:
    """A median time to fill, in words a scheduler reads at a glance: 45 min, 3.5 h, 2.1 days."""
    if minutes is None:
        return "—"
    if minutes < 90:
        return f"{minutes:.0f} min"
    if minutes < 48 * 60:
        return f"{minutes / 60:.1f} h"
    return f"{minutes / 1440:.1f} days"


def _table_row(name: str, f: insights.Figures, **extra: str) -> dict[str, str]:
    """One row of the accessible tables: every figure as text."""
    return {
        "name": name,
        "cancellations": str(f.cancellations),
        "filled": f"{f.filled} ({f.filled_from_waitlist} from waitlist)",
        "fill_rate": _percent(f.fill_rate),
        "median": _duration(f.median_minutes_to_fill),
        "offers": str(f.offers),
        "acceptance": _percent(f.acceptance_rate),
        "offers_per_fill": _number(f.offers_per_fill),
        "no_shows": f"{f.no_shows} of {f.attendance_recorded}",
        "late": str(f.late_cancellations),
        **extra,
    }


Weekly = dict[str, Callable[[insights.WeekFigures], float | None]]


def _weekly(weeks: list[insights.WeekFigures], series: Weekly) -> list[tuple[str, list[float | None]]]:
    return [(name, [value(w) for w in weeks]) for name, value in series.items()]


def _ratio(value: float | None, scale: float) -> float | None:
    return None if value is None else round(value * scale, 1)


# The series of the four charts (the page colours them, in this order, and names them in its legends).
REFILLS: Weekly = {
    "Cancelled": lambda w: w.cancellations,
    "Filled": lambda w: w.filled,
    "From waitlist": lambda w: w.filled_from_waitlist,
}
RATES: Weekly = {
    "Fill rate": lambda w: _ratio(w.fill_rate, 100),
    "Acceptance": lambda w: _ratio(w.acceptance_rate, 100),
}
SPEED: Weekly = {
    "Median hours to fill": lambda w: _ratio(w.median_minutes_to_fill, 1 / 60),
    "Offers per fill": lambda w: w.offers_per_fill,
}
ATTENDANCE: Weekly = {
    "No-shows": lambda w: w.no_shows,
    "Late cancellations": lambda w: w.late_cancellations,
}


def _charts(weeks: list[insights.WeekFigures]) -> tuple[ChartGeometry, ...]:
    """The four charts' geometry (refills, rates, time to fill, attendance) from the weeks the table "By week"
    shows: the same numbers."""
    labels = [f"{w.week_start:%b %d}" for w in weeks]
    return (
        chart_geometry("bar", labels, _weekly(weeks, REFILLS)),
        chart_geometry("line", labels, _weekly(weeks, RATES), unit="%"),
        chart_geometry("line", labels, _weekly(weeks, SPEED)),
        chart_geometry("bar", labels, _weekly(weeks, ATTENDANCE)),
    )


class InsightsState(AdminState):
    """The figures of the practice for its admin (no patient data: counts, staff and clinic names, message ids)."""

    clinic_filter: str = ALL
    provider_filter: str = ALL
    start_day: str = ""
    end_day: str = ""
    provider_options: list[dict[str, str]] = []
    summary: list[dict[str, str]] = []
    refill_chart: ChartGeometry = ChartGeometry(series=[Series() for _ in REFILLS])
    rate_chart: ChartGeometry = ChartGeometry(series=[Series() for _ in RATES])
    speed_chart: ChartGeometry = ChartGeometry(series=[Series() for _ in SPEED])
    attendance_chart: ChartGeometry = ChartGeometry(series=[Series() for _ in ATTENDANCE])
    week_rows: list[dict[str, str]] = []
    clinic_rows: list[dict[str, str]] = []
    provider_rows: list[dict[str, str]] = []
    dead_letters: list[dict[str, str]] = []
    dead_total: int = 0
    range_label: str = ""
    loaded: bool = False
    load_error: str = ""

    def _query(self) -> None:
        actor = self._admin()
        if actor is None:
            return
        try:
            with reads_only(), UnitOfWork(actor) as uow:
                found = insights.practice_insights(
                    actor,
                    uow,
                    start=_day(self.start_day),
                    end=_day(self.end_day),
                    clinic_id=uuid.UUID(self.clinic_filter) if self.clinic_filter != ALL else None,
                    provider_id=uuid.UUID(self.provider_filter) if self.provider_filter != ALL else None,
                )
        except DomainError as exc:
            self.load_error, self.loaded = exc.message, True
            return
        self.load_error = ""
        self.start_day, self.end_day = found.start.isoformat(), found.end.isoformat()
        self.range_label = f"{found.start:%b %d, %Y} – {found.end:%b %d, %Y}"
        t = found.totals
        self.summary = [
            {"label": "Fill rate of cancelled slots", "value": _percent(t.fill_rate),
             "detail": f"{t.filled} of {t.cancellations} filled, {t.filled_from_waitlist} from the waitlist"},
            {"label": "Median time to fill", "value": _duration(t.median_minutes_to_fill),
             "detail": "from the cancellation to the new booking"},
            {"label": "Offer acceptance", "value": _percent(t.acceptance_rate),
             "detail": f"{t.offers_accepted} accepted, {t.offers_declined} declined, {t.offers_expired} expired"},
            {"label": "Offers per fill", "value": _number(t.offers_per_fill),
             "detail": f"{t.offers} offers made"},
            {"label": "No-shows", "value": str(t.no_shows),
             "detail": f"{_percent(t.no_show_rate)} of {t.attendance_recorded} recorded visits"},
            {"label": "Late cancellations", "value": str(t.late_cancellations),
             "detail": f"of {t.cancellations} cancellations"},
        ]  # fmt: skip
        self.refill_chart, self.rate_chart, self.speed_chart, self.attendance_chart = _charts(found.weeks)
        self.week_rows = [_table_row(f"Week of {w.week_start:%b %d}", w) for w in found.weeks]
        self.clinic_rows = [_table_row(c.name, c, id=str(c.clinic_id)) for c in found.clinics]
        self.provider_rows = [_table_row(p.name, p, id=str(p.provider_id)) for p in found.providers]
        self.dead_total = found.dead_letters_total
        self.dead_letters = [
            {
                "id": str(d.id),
                "when": d.created_at.strftime("%Y-%m-%d %H:%M UTC"),
                "what": d.event_type.replace("_", " ").capitalize(),
                "channel": d.channel,
                "attempts": str(d.attempts),
                "error": d.last_error or "—",
            }
            for d in found.dead_letters
        ]
        if not self.provider_options or self.provider_filter == ALL:
            self.provider_options = [{"id": ALL, "name": "All providers"}] + [
                {"id": str(p.provider_id), "name": p.name} for p in found.providers
            ]
        self.loaded = True

    @rx.event
    def load(self):
        actor = self._admin()
        if actor is None:
            return
        self._refresh(actor)  # the practice's clinics (the clinic filter's options)
        self.clinic_filter = self.provider_filter = ALL
        self.start_day = self.end_day = ""
        self.provider_options = []
        self.loaded = False
        self._query()

    def _requery(self):
        if self._admin() is None:
            return rx.toast.error(SESSION_ENDED)
        self._query()
        return None

    @rx.event
    def set_clinic_filter(self, value: str):
        known = {c["id"] for c in self.clinics}
        self.clinic_filter = value if value in known else ALL
        self.provider_filter = ALL  # the providers offered follow the clinic
        self.provider_options = []
        return self._requery()

    @rx.event
    def set_provider_filter(self, value: str):
        known = {o["id"] for o in self.provider_options}
        self.provider_filter = value if value in known else ALL
        return self._requery()

    @rx.event
    def set_start_day(self, value: str):
        self.start_day = value if _day(value) else ""
        return self._requery()

    @rx.event
    def set_end_day(self, value: str):
        self.end_day = value if _day(value) else ""
        return self._requery()

    @rx.event
    def clear_filters(self):
        self.clinic_filter = self.provider_filter = ALL
        self.start_day = self.end_day = ""
        self.provider_options = []
        return self._requery()

    @rx.var
    def clinic_filter_options(self) -> list[dict[str, str]]:
        return [{"id": ALL, "name": "All clinics"}] + [
            {"id": c["id"], "name": c["name"] + (" (archived)" if c["archived"] else "")} for c in self.clinics
        ]
