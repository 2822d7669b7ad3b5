"""The Policy page's preview in words (portal/state/waitlist_admin.py): the figures of both settings on one line,
the sentence that says what they are, too little history said as such, and when the form differs from the saved
policy (the preview button shows only then)."""

from __future__ import annotations

from typing import Any

from portal.state.waitlist_admin import _parse_form, _same, preview_lines

FIGURES: dict[str, Any] = {
    "weeks": 4,
    "cancellations": 12,
    "entries": 9,
    "enough": True,
    "too_large": False,
    "current": {"fill_rate": 0.78, "median_minutes_to_fill": 12.0, "offers_per_fill": 2.1},
    "proposed": {"fill_rate": 0.84, "median_minutes_to_fill": 9.4, "offers_per_fill": 1.8},
}


def test_the_figures_of_both_settings_read_as_one_line() -> None:
    lines = preview_lines("en", FIGURES, clinic=False)
    assert lines["headline"] == (
        "Fill rate 78% → 84% · median time to fill 12 min → 9 min · offers per filled slot 2.1 → 1.8"
    )
    assert lines["detail"].startswith("A simulation of the practice's last 4 weeks (12 cancelled appointments, 9 ")
    assert "modelled patient replies" in lines["detail"]
    assert preview_lines("en", FIGURES, clinic=True)["detail"].startswith("A simulation of this clinic's last 4")


def test_figures_that_do_not_exist_show_as_a_dash_and_spanish_is_spanish() -> None:
    none_filled = {**FIGURES, "proposed": {"fill_rate": 0.0, "median_minutes_to_fill": None, "offers_per_fill": None}}
    assert preview_lines("en", none_filled, clinic=False)["headline"].endswith(
        "12 min → – · offers per filled slot 2.1 → –"
    )
    spanish = preview_lines("es", FIGURES, clinic=False)
    assert spanish["headline"].startswith("Huecos cubiertos 78% → 84%")
    assert spanish["detail"].startswith("Una simulación de las últimas 4 semanas")


def test_too_little_history_and_too_large_are_said_instead_of_figures() -> None:
    little = preview_lines("en", {"weeks": 4, "cancellations": 1, "entries": 0, "enough": False}, clinic=False)
    assert little["headline"] == ""
    assert little["detail"].startswith("Too little history to preview: the last 4 weeks hold 1 cancelled")
    large = preview_lines("en", {"weeks": 1, "enough": False, "too_large": True}, clinic=False)
    assert "too large to preview" in large["detail"]


def test_the_form_differs_from_the_saved_policy_only_when_a_value_does() -> None:
    assert _same("offer_hold_minutes", "30", "30.0") and _same("urgency_weight", " 10", "10")
    assert not _same("offer_hold_minutes", "15", "30")
    assert not _same("offer_hold_minutes", "", "30") and not _same("quiet_hours_start", "21:00", "22:00")


def test_the_typed_form_parses_as_a_save_would() -> None:
    errors, changes = _parse_form({"offer_hold_minutes": "15", "urgency_weight": "2.5"}, quiet_enabled=False)
    assert changes["offer_hold_minutes"] == 15 and changes["urgency_weight"] == 2.5
    assert changes["quiet_hours_start"] is None and "entry_ttl_days" in errors  # a field left empty
