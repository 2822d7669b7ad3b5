"""A live countdown that ticks in the browser: no server round trip per second.

`countdown(until_iso)` renders "14:59" (or "1:02:03") counting down to an ISO instant and "0:00" once it has
passed; `on_expire` fires once at zero (e.g. to reload the page's data). Screen readers get role="timer" with
an aria-label in words that changes once a minute only, and the ticking digits are aria-hidden, so they are not
flooded every second. With `announce=True` (one countdown on the page, e.g. the patient's offer) a polite live
region also says the words when they change: each minute in the last ten, each five minutes up to an hour, each
hour before that, and "Time is up" at zero. The words are the page's language (portal/i18n.py): the component
gets them as templates with an {n}, already translated, and fills in the number.

`expiry_gate(until_iso, *children, expired_note=...)` wraps controls that only make sense until that instant
(an offer's Accept): the moment the countdown shows 0:00 the browser disables every control inside (a disabled
fieldset) and shows `expired_note` above them, without waiting for the server to expire the offer.
"""

from __future__ import annotations

from typing import Any

import reflex as rx
from reflex_base.event import no_args_event_spec

from portal.i18n import t

_COUNTDOWN_JS = """
function WaitwellCountdown({ until, onExpire, announce, words: said_as, ...rest }) {
  const target = Date.parse(until);
  const left = () => (Number.isNaN(target) ? 0 : Math.max(0, Math.floor((target - Date.now()) / 1000)));
  const [secs, setSecs] = useState(left);
  const fired = useRef(false);
  useEffect(() => {
    fired.current = false;
    setSecs(left());
    const timer = setInterval(() => {
      const s = left();
      setSecs(s);
      if (s <= 0) {
        clearInterval(timer);
        if (!fired.current) {
          fired.current = true;
          if (onExpire) onExpire();
        }
      }
    }, 1000);
    return () => clearInterval(timer);
  }, [until]);
  const h = Math.floor(secs / 3600);
  const m = Math.floor((secs % 3600) / 60);
  const s = secs % 60;
  const pad = (n) => String(n).padStart(2, "0");
  const text = h > 0 ? `${h}:${pad(m)}:${pad(s)}` : `${m}:${pad(s)}`;
  // Said in words that change rarely: each minute in the last ten, each five up to an hour, then each hour.
  const mins = Math.ceil(secs / 60);
  const w = said_as || {};
  const say = (one, many, n) => String((n === 1 ? w[one] : w[many]) || "").split("{n}").join(String(n));
  const words = secs <= 0 ? (w.up || "Time is up")
    : mins <= 10 ? say("minute", "minutes", mins)
    : mins <= 60 ? say("minute", "minutes", Math.ceil(mins / 5) * 5)
    : say("hour", "hours", Math.floor(mins / 60));
  // The live region starts empty (nothing to say on arrival) and changes only when the words do.
  // (Effects run in order: a new `until` resets first, so its first words are not announced.)
  const [said, setSaid] = useState("");
  const lastWords = useRef(null);
  useEffect(() => { lastWords.current = null; setSaid(""); }, [until]);
  useEffect(() => {
    if (lastWords.current !== null && lastWords.current !== words) setSaid(words);
    lastWords.current = words;
  }, [words]);
  const timer = jsx("span", { role: "timer", "aria-label": words, "data-seconds": secs, ...rest },
    jsx("span", { "aria-hidden": "true" }, text));
  if (!announce) return timer;
  return jsx(Fragment, null, timer,
    jsx("span", { className: "sr-only", "aria-live": "polite", "aria-atomic": "true" }, said));
}
"""


_EXPIRY_GATE_JS = """
function WaitwellExpiryGate({ until, expiredNote, children, ...rest }) {
  // Over when the countdown for the same instant shows 0:00 (less than a second left).
  const target = Date.parse(until);
  const isOver = () => Number.isNaN(target) || Math.floor((target - Date.now()) / 1000) <= 0;
  const [over, setOver] = useState(isOver);
  useEffect(() => {
    const now = isOver();
    setOver(now);
    if (now) return;
    const timer = setInterval(() => {
      if (isOver()) {
        clearInterval(timer);
        setOver(true);
      }
    }, 250);
    return () => clearInterval(timer);
  }, [until]);
  const note = over && expiredNote
    ? jsx("p", { role: "status", className: "expiry-gate-note",
                 style: { margin: "0 0 8px", fontWeight: 600, color: "var(--amber-11)" } }, expiredNote)
    : null;
  return jsx("div", { "data-expired": over ? "true" : "false", ...rest },
    note,
    // A disabled fieldset disables its buttons, but Radix styles only their own disabled state: grey them too.
    jsx("fieldset", { disabled: over, style: { border: 0, padding: 0, margin: 0, minWidth: 0 },
                      css: over ? { "& button": { filter: "grayscale(1)", opacity: 0.55, cursor: "not-allowed" } }
                                : undefined }, children));
}
"""


class ExpiryGate(rx.Component):
    """Controls disabled in the browser once `until` has passed, with a note saying so (see the docstring)."""

    library: str | None = None
    tag: str | None = "WaitwellExpiryGate"

    until: rx.Var[str]
    expired_note: rx.Var[str]

    def add_imports(self) -> dict[str, Any]:
        return {
            "react": [rx.ImportVar(tag="useState"), rx.ImportVar(tag="useEffect")],
            "@emotion/react": [rx.ImportVar(tag="jsx")],
        }

    def add_custom_code(self) -> list[str]:
        return [_EXPIRY_GATE_JS]


def expiry_gate(until_iso: rx.Var | str, *children: rx.Component, expired_note: rx.Var | str, **props: Any):
    return ExpiryGate.create(*children, until=until_iso, expired_note=expired_note, **props)


class Countdown(rx.Component):
    """The browser-side ticking timer (see the module docstring)."""

    library: str | None = None
    tag: str | None = "WaitwellCountdown"

    until: rx.Var[str]
    announce: rx.Var[bool]
    # {"up", "minute", "minutes", "hour", "hours"}: the words said, in the page's language, {n} for the number.
    words: rx.Var[dict[str, str]]
    on_expire: rx.EventHandler[no_args_event_spec]

    def add_imports(self) -> dict[str, Any]:
        return {
            "react": [
                rx.ImportVar(tag="useState"),
                rx.ImportVar(tag="useEffect"),
                rx.ImportVar(tag="useRef"),
                rx.ImportVar(tag="Fragment"),
            ],
            "@emotion/react": [rx.ImportVar(tag="jsx")],
        }

    def add_custom_code(self) -> list[str]:
        return [_COUNTDOWN_JS]


def countdown_words() -> dict[str, rx.Var]:
    """What a screen reader hears, in the page's language."""
    return {
        "up": t("Time is up"),
        "minute": t("About {n} minute left"),
        "minutes": t("About {n} minutes left"),
        "hour": t("More than {n} hour left"),
        "hours": t("More than {n} hours left"),
    }


def countdown(until_iso: rx.Var | str, *, announce: bool = False, **props: Any) -> rx.Component:
    return Countdown.create(until=until_iso, announce=announce, words=countdown_words(), **props)
