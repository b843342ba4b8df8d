"""Keyset ("seek") pagination: the next page starts after the last row seen, not at an OFFSET.

`OFFSET 500000` makes the database walk half a million rows before answering; a keyset page
instead asks for the rows *after* the last one shown in the list's order, which the database
answers from the matching index (`company_entity_name_idx` for `(entity, name, id)`, and so on)
at the same cost on page 1 and page 10,000. The order must end with a unique column (`id`) so no
two rows tie and no row is skipped or repeated.

The condition is written as `first >= v1 AND (first > v1 OR (second, ...) after (v2, ...))`,
whose leading range on the first column is what lets the index start at the cursor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Q, QuerySet

from axiomatic.ordering import order_matches


def _column(field: str) -> tuple[str, bool]:
    return (field[1:], True) if field.startswith("-") else (field, False)


def _strictly_after(order: tuple[str, ...], values: tuple) -> Q:
    name, descending = _column(order[0])
    beyond = Q(**{f"{name}__{'lt' if descending else 'gt'}": values[0]})
    if len(order) == 1:
        return beyond
    return beyond | (Q(**{name: values[0]}) & _strictly_after(order[1:], values[1:]))


def keyset_after(order: tuple[str, ...], values: tuple) -> Q:
    """Rows strictly after `values` (one per column of `order`; "-name" is descending)."""
    if len(order) != len(values):
        raise ValueError("A cursor needs one value per ordering column.")
    name, descending = _column(order[0])
    return Q(**{f"{name}__{'lte' if descending else 'gte'}": values[0]}) & _strictly_after(order, values)


@dataclass(frozen=True)
class KeysetPage:
    """One page of rows and the cursor of the next page (None on the last page)."""

    rows: list[Any]
    next_after: tuple | None

    @property
    def has_more(self) -> bool:
        return self.next_after is not None


def cursor_of(row: Any, order: tuple[str, ...]) -> tuple:
    """The cursor values of a row: its value of each ordering column."""
    values = []
    for field in order:
        value = row
        for part in _column(field)[0].split("__"):
            value = getattr(value, part)
        values.append(value)
    return tuple(values)


def keyset_page(
    queryset: QuerySet, *, order: tuple[str, ...], after: tuple | None, size: int, search: bool = False
) -> KeysetPage:
    """`size` rows of `queryset` in `order`, after the cursor `after` (from the start when None).

    Reads `size + 1` rows to learn whether another page follows: no COUNT(*). `search`: the
    queryset is a text search's matches, which are sorted rather than walked for when PostgreSQL
    expects few of them (`axiomatic.ordering.order_matches`).
    """
    rows = queryset.order_by(*order)
    if after is not None:
        rows = rows.filter(keyset_after(order, after))
    if search:
        rows = order_matches(rows, [_column(field) for field in order])
    fetched = list(rows[: size + 1])
    page = fetched[:size]
    return KeysetPage(rows=page, next_after=cursor_of(page[-1], order) if len(fetched) > size else None)
