"""A live countdown that ticks in the browser: no server round trip per second.

`countdown(until_iso)` renders "14:59" (or "1:02:03") counting down to an ISO instant and "0:00" once it has
passed; `on_expire` fires once at zero (e.g. to reload the page's data). Screen readers get role="timer" with
an aria-label in words that changes once a minute only, so they are not flooded every second.
"""

from __future__ import annotations

from typing import Any

import reflex as rx
from reflex_base.event import no_args_event_spec

_COUNTDOWN_JS = """
function WaitwellCountdown({ until, onExpire, ...rest }) {
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
  const mins = Math.ceil(secs / 60);
  const words = secs <= 0 ? "Time is up" : `About ${mins} minute${mins === 1 ? "" : "s"} left`;
  return jsx("span", { role: "timer", "aria-label": words, "data-seconds": secs, ...rest }, text);
}
"""


class Countdown(rx.Component):
    """The browser-side ticking timer (see the module docstring)."""

    library: str | None = None
    tag: str | None = "WaitwellCountdown"

    until: rx.Var[str]
    on_expire: rx.EventHandler[no_args_event_spec]

    def add_imports(self) -> dict[str, Any]:
        return {
            "react": [rx.ImportVar(tag="useState"), rx.ImportVar(tag="useEffect"), rx.ImportVar(tag="useRef")],
            "@emotion/react": [rx.ImportVar(tag="jsx")],
        }

    def add_custom_code(self) -> list[str]:
        return [_COUNTDOWN_JS]


def countdown(until_iso: rx.Var | str, **props: Any) -> rx.Component:
    return Countdown.create(until=until_iso, **props)
