"""Keyset pages of the sales pages' lists: the next page starts after the last row seen.

The condition is the API's own (`axiomatic.keyset.keyset_after`), so a page of companies on
`/crm/companies` is read exactly as `GET /api/crm/companies?cursor=...` reads it, through the
ordering index, at the same cost on page 1 and page 10,000.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet

from axiomatic.keyset import keyset_after, order_keys
from axiomatic.ordering import first_matches, order_matches


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
    for key in order_keys(order):
        value = row
        for part in key.field.split("__"):
            value = getattr(value, part)
        values.append(value)
    return tuple(values)


def keyset_page(
    queryset: QuerySet, *, order: tuple[str, ...], after: tuple | None, size: int, search: bool = False
) -> KeysetPage:
    """`size` rows of `queryset` in `order`, after the cursor `after` (from the start when None).

    Reads `size + 1` rows to learn whether another page follows: no COUNT(*). `search`: the
    queryset is a text search's matches: the first page by a bounded walk of the ordering index,
    later ones (or a short walk) sorted rather than walked for when PostgreSQL expects few of them
    (`axiomatic.ordering`).
    """
    keys = order_keys(order)
    if len(order) != len(after or order):
        raise ValueError("A cursor needs one value per ordering column.")
    rows = queryset.order_by(*order)
    if after is not None:
        rows = keyset_after(rows, keys, list(after))
    if search:
        search_order = [(key.field, key.descending) for key in keys]
        rows = order_matches(rows, search_order) if after is not None else first_matches(rows, search_order, size + 1)
    fetched = list(rows[: size + 1])
    page = fetched[:size]
    return KeysetPage(rows=page, next_after=cursor_of(page[-1], order) if len(fetched) > size else None)
