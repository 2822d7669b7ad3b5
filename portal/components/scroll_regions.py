"""Tables wider than the screen: a keyboard can scroll them, and a shadow at the edge shows there is more.

Radix's table scrolls sideways inside its own scroll area, which a keyboard cannot reach when the table holds
nothing focusable (WCAG 2.1.1; axe's scrollable-region-focusable). `scroll_regions()`, rendered once by the shell,
watches the page: a table's scroll area that overflows becomes a named, focusable region (arrow keys scroll it)
with `data-scrolls-x="true"` (the edge shadow in assets/a11y.css); one that fits again is left as Radix made it.
"""

from __future__ import annotations

from typing import Any

import reflex as rx

_SCROLL_REGIONS_JS = """
function WaitwellScrollRegions() {
  useEffect(() => {
    let frame = 0;
    const mark = () => {
      frame = 0;
      document.querySelectorAll(".rt-TableRoot [data-radix-scroll-area-viewport]").forEach((el) => {
        const scrolls = el.scrollWidth > el.clientWidth + 1;
        const marked = el.getAttribute("data-scrolls-x") === "true";
        if (scrolls && !marked) {
          const name = el.querySelector("table")?.getAttribute("aria-label") || "Table";
          el.setAttribute("tabindex", "0");
          el.setAttribute("role", "region");
          el.setAttribute("aria-label", `${name}, scrolls sideways`);
          el.setAttribute("data-scrolls-x", "true");
        } else if (!scrolls && marked) {
          ["tabindex", "role", "aria-label", "data-scrolls-x"].forEach((a) => el.removeAttribute(a));
        }
      });
    };
    const schedule = () => { if (!frame) frame = requestAnimationFrame(mark); };
    const observer = new MutationObserver(schedule);
    observer.observe(document.body, { childList: true, subtree: true, characterData: true });
    window.addEventListener("resize", schedule);
    schedule();
    return () => {
      observer.disconnect();
      window.removeEventListener("resize", schedule);
      if (frame) cancelAnimationFrame(frame);
    };
  }, []);
  return null;
}
"""


class ScrollRegions(rx.Component):
    """Renders nothing; marks the overflowing table scroll areas (see the module docstring)."""

    library: str | None = None
    tag: str | None = "WaitwellScrollRegions"

    def add_imports(self) -> dict[str, Any]:
        return {"react": [rx.ImportVar(tag="useEffect")]}

    def add_custom_code(self) -> list[str]:
        return [_SCROLL_REGIONS_JS]


def scroll_regions() -> rx.Component:
    return ScrollRegions.create()
