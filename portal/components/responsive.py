"""Tables that become stacked cards on a phone (assets/phone.css): each row a card, each cell a labelled line.

Mark the table with `class_name=STACK_ON_PHONE` and build its cells with `cell(label, ...)`, `title_cell(...)` and
`actions_cell(...)`. One DOM for every width (no hidden duplicate of the rows); the roles are explicit so the table
stays a table for assistive technology when a phone lays it out as blocks.
"""

from __future__ import annotations

from typing import Any

import reflex as rx

STACK_ON_PHONE = "stack-on-phone"


def cell(label: str, *children: Any, title: bool = False, **props: Any) -> rx.Component:
    """A data cell; on a phone, `label` (its column's name) shows before its value. `title`: the cell that names
    the row heads its card instead (no label)."""
    attrs = {"data-title": "1"} if title else {"data-label": label}
    return rx.table.cell(*children, custom_attrs=attrs, role="cell", **props)


def title_cell(*children: Any, **props: Any) -> rx.Component:
    """The row's name (a row header): it heads the row's card on a phone."""
    return rx.table.row_header_cell(*children, role="rowheader", **props)


def actions_cell(*children: Any, **props: Any) -> rx.Component:
    """The row's actions: a wrapping row of buttons at the bottom of its card on a phone."""
    return rx.table.cell(*children, custom_attrs={"data-actions": "1"}, role="cell", **props)


def row(*cells: rx.Component, **props: Any) -> rx.Component:
    return rx.table.row(*cells, role="row", **props)
