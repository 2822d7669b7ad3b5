"""Automatic logoff in the page: activity reports, the "Still there?" dialog, and the timers that ask the server.

`idle_watch()` goes inside the signed-in shell. Its browser part (`WaitwellIdleWatch`):

* listens for the person's own input on the document (trusted pointer, key, wheel and touch events; never
  scripted ones) and sends `IdleState.activity` at most once per `report_s` seconds. Nothing else reports
  activity: live pushes, countdowns and reconnects do not.
* asks the server (`IdleState.check`, which only looks at the clock) when the warning is due and when the timeout
  is, and whenever the tab comes back into view (after a laptop slept, its timers fire late; the server's clock
  decides anyway, and refuses an idle session on any event).

While "Still there?" is open, input elsewhere does not count: only "Stay signed in" keeps the session.
"""

from __future__ import annotations

from typing import Any

import reflex as rx
from reflex_base.event import no_args_event_spec

from portal.components.native_form import native_form
from portal.i18n import t
from portal.state.idle import IdleState
from portal.state.session import SessionState

_IDLE_WATCH_JS = """
function WaitwellIdleWatch({ timeoutS, warnS, reportS, leftMs, sync, warning, onActivity, onCheck, ...rest }) {
  const latest = useRef({});
  latest.current = { onActivity, onCheck, warning };
  const report = useRef({ last: 0, timer: null });
  // The first look when the page opens: the server says how long is left.
  useEffect(() => { if (latest.current.onCheck) latest.current.onCheck(); }, []);
  // The person's own input, reported at most every reportS seconds.
  useEffect(() => {
    if (!timeoutS) return undefined;
    const r = report.current;
    const send = () => {
      r.timer = null;
      r.last = Date.now();
      if (latest.current.onActivity) latest.current.onActivity();
    };
    const seen = (e) => {
      if (!e.isTrusted || latest.current.warning || r.timer) return;
      const wait = r.last + reportS * 1000 - Date.now();
      if (wait <= 0) send(); else r.timer = setTimeout(send, wait);
    };
    const kinds = ["pointerdown", "pointermove", "keydown", "wheel", "touchstart"];
    kinds.forEach((k) => document.addEventListener(k, seen, { capture: true, passive: true }));
    return () => {
      kinds.forEach((k) => document.removeEventListener(k, seen, { capture: true }));
      if (r.timer) clearTimeout(r.timer);
      r.timer = null;
    };
  }, [timeoutS, reportS]);
  // Ask the server when the warning is due and when the time is out; and when the tab is seen again.
  useEffect(() => {
    if (!timeoutS) return undefined;
    const ask = () => { if (latest.current.onCheck) latest.current.onCheck(); };
    const timers = [];
    if (!warning) timers.push(setTimeout(ask, Math.max(0, leftMs - warnS * 1000)));
    timers.push(setTimeout(ask, leftMs + 500));
    const seenAgain = () => { if (document.visibilityState === "visible") ask(); };
    document.addEventListener("visibilitychange", seenAgain);
    return () => {
      timers.forEach((t) => clearTimeout(t));
      document.removeEventListener("visibilitychange", seenAgain);
    };
  }, [sync, warning, timeoutS]);
  return jsx("span", { hidden: true, "data-idle-timeout": timeoutS, "data-idle-warning": warning ? "1" : "0",
                       ...rest });
}
"""


class IdleWatch(rx.Component):
    """The browser side of the automatic logoff (see the module docstring)."""

    library: str | None = None
    tag: str | None = "WaitwellIdleWatch"

    timeout_s: rx.Var[int]
    warn_s: rx.Var[int]
    report_s: rx.Var[int]
    left_ms: rx.Var[int]
    sync: rx.Var[int]
    warning: rx.Var[bool]
    on_activity: rx.EventHandler[no_args_event_spec]
    on_check: rx.EventHandler[no_args_event_spec]

    def add_imports(self) -> dict[str, Any]:
        return {
            "react": [rx.ImportVar(tag="useEffect"), rx.ImportVar(tag="useRef")],
            "@emotion/react": [rx.ImportVar(tag="jsx")],
        }

    def add_custom_code(self) -> list[str]:
        return [_IDLE_WATCH_JS]


def _still_there() -> rx.Component:
    return rx.alert_dialog.root(
        rx.alert_dialog.content(
            # In the page's language (English on the staff pages; the patient's own on theirs).
            rx.alert_dialog.title(t("Still there?")),
            rx.alert_dialog.description(
                t(
                    "You have not used Waitwell for a while. To protect your information, you will be signed out "
                    "in less than a minute."
                ),
                size="2",
            ),
            rx.hstack(
                native_form(
                    rx.button(t("Sign out"), type="submit", variant="soft", color_scheme="gray"),
                    action="/auth/logout",
                    forget_client=True,
                    notify=SessionState.end_client_state,
                ),
                rx.button(t("Stay signed in"), on_click=IdleState.stay, auto_focus=True),
                justify="end",
                spacing="3",
                margin_top="16px",
            ),
            max_width="440px",
        ),
        open=IdleState.warning,
    )


def idle_watch() -> rx.Component:
    """The automatic logoff's page part: the watcher and the "Still there?" dialog."""
    return rx.fragment(
        IdleWatch.create(
            timeout_s=IdleState.timeout_s,
            warn_s=IdleState.warn_s,
            report_s=IdleState.report_s,
            left_ms=IdleState.left_ms,
            sync=IdleState.sync,
            warning=IdleState.warning,
            on_activity=IdleState.activity,
            on_check=IdleState.check,
        ),
        _still_there(),
    )
