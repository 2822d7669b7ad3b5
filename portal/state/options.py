"""Values from selects: a browser can send anything, so a chosen value is checked against the options."""

from __future__ import annotations

from collections.abc import Iterable


def option_or(value: str, options: Iterable[dict[str, str]], default: str) -> str:
    """`value` when it is the id of one of `options`, else `default`."""
    return value if any(option["id"] == value for option in options) else default
