"""The patient's pages in their language: every string the code says is in every catalogue (so a third language is
one .po file), `t` picks the text in the browser, `tr`/`trn` on the server, and Babel formats the dates."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from babel.messages.extract import extract_from_dir

from backend.notifications import formatting
from backend.notifications.templates import LOCALES
from portal import i18n
from portal.components import format as fmt

ROOT = i18n.LOCALE_DIR.parent


def _used_msgids() -> dict[str | tuple[str, str], str]:
    """Every msgid in the portal's code (t, tr, trn, N_), found by Babel's own extractor -> where it is."""
    found: dict[str | tuple[str, str], str] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
        str(ROOT / "portal"), method_map=[("**.py", "python")], keywords=i18n.KEYWORDS
    ):
        key = tuple(message) if isinstance(message, (list, tuple)) else message
        found.setdefault(key, f"portal/{filename}:{lineno}")  # type: ignore[arg-type]
    return found


USED = _used_msgids()
CATALOGUES = {path.parent.parent.name: path for path in sorted(i18n.LOCALE_DIR.glob("*/LC_MESSAGES/portal.po"))}


def test_there_are_strings_and_catalogues() -> None:
    assert len(USED) > 300 and "Find care" in USED and ("{n} provider", "{n} providers") in USED
    assert set(CATALOGUES) == {"es"}


@pytest.mark.parametrize("lang", sorted(CATALOGUES))
def test_every_string_in_the_code_is_translated_in_every_catalogue(lang: str) -> None:
    catalogue = i18n.read_catalogue(CATALOGUES[lang])
    entries = {(tuple(m.id) if isinstance(m.id, (list, tuple)) else m.id): m for m in catalogue if m.id}
    missing = [f"{where}: {msgid!r}" for msgid, where in USED.items() if msgid not in entries]
    assert not missing, f"not in locale/{lang}/LC_MESSAGES/portal.po:\n" + "\n".join(missing)
    problems = []
    for msgid, message in entries.items():
        texts = list(message.string) if isinstance(message.string, (list, tuple)) else [message.string]
        sources = list(msgid) if isinstance(msgid, tuple) else [msgid]
        if message.fuzzy or not all(texts) or len(texts) != (catalogue.num_plurals if isinstance(msgid, tuple) else 1):
            problems.append(f"empty, fuzzy or plural forms missing: {msgid!r}")
        elif any(i18n.placeholders(text) != i18n.placeholders(sources[-1]) for text in texts):
            problems.append(f"placeholders differ: {msgid!r} -> {texts!r}")
    assert not problems, "\n".join(problems)
    stale = sorted(str(msgid) for msgid in entries if msgid not in USED)
    assert not stale, f"in locale/{lang} but no longer in the code (run pybabel update): {stale}"


def test_a_language_is_shipped_with_both_its_catalogue_and_its_message_templates() -> None:
    assert list(i18n.languages()) == list(LOCALES) == ["en", "es"]
    assert i18n.languages() == {"en": "English", "es": "Español"}
    # No compiled catalogue is kept: they are built in memory at start-up.
    assert not list(i18n.LOCALE_DIR.rglob("*.mo"))


def test_tr_and_trn_on_the_server() -> None:
    assert i18n.tr("es", "Find care") == "Buscar atención"
    assert i18n.tr("es-MX", "Hello, {name}", name="Ana") == "Hola, Ana"
    assert i18n.tr("en", "Hello, {name}", name="Ana") == i18n.tr("fr", "Hello, {name}", name="Ana") == "Hello, Ana"
    assert i18n.tr("es", "A string nobody translated") == "A string nobody translated"
    assert i18n.tr("es", "") == ""
    assert i18n.trn("es", "{n} provider", "{n} providers", 1) == "1 profesional"
    assert i18n.trn("es", "{n} provider", "{n} providers", 3) == "3 profesionales"
    assert i18n.trn("en", "{n} provider", "{n} providers", 0) == "0 providers"
    # A value that looks like a placeholder is not filled again.
    assert i18n.tr("es", "Hello, {name}", name="{name}") == "Hola, {name}"


def test_t_picks_the_text_in_the_browser_by_the_pages_language() -> None:
    js = str(i18n.t("Find care"))
    assert '["en"] : "Find care"' in js and '["es"] : "Buscar atenci\\u00f3n"' in js
    assert "session_state.lang" in js
    filled = str(i18n.t("Hello, {name}", name=i18n.rx.Var.create("Ana")))
    assert '.split("{name}").join("Ana")' in filled


def test_the_state_normalises_a_stored_language() -> None:
    assert [i18n.normalise(x) for x in ("es", "ES", "es_ES", "fr", "", None)] == ["es", "es", "es", "en", "en", "en"]


# -- dates, by Babel ----------------------------------------------------------------------------------------

START = datetime(2031, 11, 25, 20, 0, tzinfo=UTC)  # 15:00 in New York
END = datetime(2031, 11, 25, 20, 50, tzinfo=UTC)
ZONE = "America/New_York"


@pytest.mark.parametrize(
    ("lang", "day", "when", "week", "windows"),
    [
        (
            "en",
            "Tue 25 Nov 2031",
            "Tue 25 Nov 2031, 15:00–15:50 EST",
            "30 Nov – 06 Dec 2026",
            "Tue 09:00–12:00, Sun 14:00–17:00",
        ),
        (
            "es",
            "mar, 25 nov 2031",
            "mar, 25 nov 2031, 15:00–15:50 EST",
            "30 nov\u2009–\u20096 dic 2026",  # CLDR puts thin spaces around the dash
            "mar 09:00–12:00, dom 14:00–17:00",
        ),
    ],
)
def test_dates_on_the_pages_follow_the_language(lang: str, day: str, when: str, week: str, windows: str) -> None:
    assert fmt.day_label(START, ZONE, lang) == day
    assert fmt.when(START, END, ZONE, lang) == when
    assert fmt.week_range(date(2026, 11, 30), date(2026, 12, 6), lang) == week
    spans = [{"weekday": 1, "start": "09:00", "end": "12:00"}, {"weekday": 6, "start": "14:00", "end": "17:00"}]
    assert fmt.windows_label(spans, lang) == windows


def test_spanish_names_come_from_cldr() -> None:
    assert formatting.weekday_names("es", "wide")[0] == "lunes"
    assert fmt.date_label(date(2026, 9, 1), "es", weekday=False) == "1 sept 2026"
    assert fmt.moment(datetime(2031, 1, 6, 14, 5, tzinfo=UTC), "Europe/Madrid", "es") == "lun, 6 ene 2031, 15:05 CET"
    assert fmt.zone_label("America/Los_Angeles", "es") == "hora de Los Angeles"
    assert fmt.zone_label("America/Los_Angeles") == "Los Angeles time"
    assert fmt.label("es", fmt.STATUS_LABELS, "booked") == "Reservada" and fmt.label("es", {}, "x") == "x"
