"""The patient's pages in the patient's language: gettext catalogues read with Babel, chosen in the browser.

Source strings are English and are their own msgids. Each other language is one file,
`locale/<lang>/LC_MESSAGES/portal.po`, read at start-up with Babel (`read_po`) and compiled in memory (no .mo
file is kept in the repository); a language is shipped when its catalogue is there and the notification
templates have its folder (backend/notifications/templates/<lang>/).

Two ways to say a string:
- `t("Find care")` in page code. Reflex compiles the pages once for everybody, so the language is chosen in
  the browser: `t` returns a Var that picks the text from a compile-time table {language: text} by
  `SessionState.lang` (set from the signed-in patient's preference by the page guard, and at once when they
  change it). Values go in as `{name}` placeholders: `t("Hello, {name}", name=SessionState.user_name)`.
- `tr(lang, "Appointment cancelled.")` / `trn(lang, "{n} provider", "{n} providers", n)` in state code, for
  texts the server builds (rows, messages, errors), in the language of the state's `lang`.
`N_("Home")` marks a string kept in a table and translated where it is shown.

`tests/unit/test_i18n.py` extracts every msgid from the code (Babel's extractor) and fails when a catalogue
lacks one, leaves one empty or fuzzy, or drops a placeholder.
"""

from __future__ import annotations

import re
from functools import cache
from io import BytesIO
from pathlib import Path
from typing import Any

import reflex as rx
from babel import Locale
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

from backend.notifications.formatting import language as _shipped_language
from backend.notifications.templates import DEFAULT_LOCALE

LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"
DOMAIN = "portal"
# Babel's extractor keywords for these helpers (tests/unit/test_i18n.py and locale/babel.cfg's command).
KEYWORDS = {"t": None, "N_": None, "tr": (2,), "trn": (2, 3)}


def N_(msgid: str) -> str:
    """Mark `msgid` for the catalogues without translating it here."""
    return msgid


def read_catalogue(path: Path) -> Catalog:
    with path.open("rb") as handle:
        return read_po(handle, locale=path.parent.parent.name, domain=DOMAIN)


@cache
def catalogues() -> dict[str, Translations]:
    """Every language with a catalogue, compiled in memory (fuzzy entries left out, as msgfmt does)."""
    found: dict[str, Translations] = {}
    for path in sorted(LOCALE_DIR.glob(f"*/LC_MESSAGES/{DOMAIN}.po")):
        buffer = BytesIO()
        write_mo(buffer, read_catalogue(path))
        buffer.seek(0)
        found[path.parent.parent.name] = Translations(fp=buffer, domain=DOMAIN)
    return found


def _native_name(lang: str) -> str:
    name = Locale.parse(lang).get_display_name(lang) or lang
    return name[:1].upper() + name[1:]


@cache
def languages() -> dict[str, str]:
    """The languages a patient can choose, by code, each named in itself: {'en': 'English', 'es': 'Español'}."""
    codes = [DEFAULT_LOCALE] + [c for c in catalogues() if c != DEFAULT_LOCALE and _shipped_language(c) == c]
    return {code: _native_name(code) for code in codes}


def normalise(lang: str | None) -> str:
    """A shipped language code for `lang` ('es-MX' -> 'es'); anything else -> 'en'."""
    code = _shipped_language(lang)
    return code if code in languages() else DEFAULT_LOCALE


def _fill(text: str, values: dict[str, Any]) -> str:
    for name, value in values.items():
        text = text.replace("{" + name + "}", str(value))
    return text


def tr(lang: str | None, msgid: str, **values: Any) -> str:
    """`msgid` in `lang` (English when not translated), its `{name}` placeholders filled from `values`."""
    if not msgid:  # gettext("") is the catalogue's header
        return ""
    translations = catalogues().get(normalise(lang))
    text = translations.gettext(msgid) if translations is not None else msgid
    return _fill(text, values)


def trn(lang: str | None, singular: str, plural: str, n: int, **values: Any) -> str:
    """The form of `singular`/`plural` for `n` in `lang` (the catalogue's plural rule); `{n}` is filled too."""
    translations = catalogues().get(normalise(lang))
    if translations is None:
        text = singular if n == 1 else plural
    else:
        text = translations.ngettext(singular, plural, n)
    return _fill(text, {"n": n, **values})


def translations_of(msgid: str) -> dict[str, str]:
    """{language: text} for every shipped language."""
    return {lang: tr(lang, msgid) for lang in languages()}


_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def t(msgid: str, **values: Any) -> rx.Var:
    """`msgid` in the browser's current language (SessionState.lang), as a Var; `{name}`s filled with `values`
    (Vars or plain values), by split and join so that no value is read as a pattern."""
    from portal.state.session import SessionState  # the state imports this module for `tr`

    table = translations_of(msgid)
    text: Any = rx.Var.create(table).to(dict[str, str])[SessionState.lang].to(str)
    for name, value in values.items():
        piece = value.to(str) if isinstance(value, rx.Var) else str(value)
        text = text.split("{" + name + "}").join(piece)
    return text


def placeholders(text: str) -> set[str]:
    return set(_PLACEHOLDER.findall(text))


# --- the document's language -------------------------------------------------------------------------------

_DOCUMENT_LANGUAGE_JS = """
function WaitwellDocumentLanguage({ lang }) {
  // The page's language for screen readers, spell checkers and axe (html[lang]), kept in step with the text.
  useEffect(() => {
    if (lang) document.documentElement.lang = lang;
  }, [lang]);
  return null;
}
"""


class DocumentLanguage(rx.Component):
    """Sets <html lang> to the page's current language (renders nothing)."""

    library: str | None = None
    tag: str | None = "WaitwellDocumentLanguage"

    lang: rx.Var[str]

    def add_imports(self) -> dict[str, Any]:
        return {"react": [rx.ImportVar(tag="useEffect")]}

    def add_custom_code(self) -> list[str]:
        return [_DOCUMENT_LANGUAGE_JS]


def document_language() -> rx.Component:
    from portal.state.session import SessionState

    return DocumentLanguage.create(lang=SessionState.lang)
