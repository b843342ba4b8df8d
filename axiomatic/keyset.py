"""Keyset ("seek") pagination's one condition: the rows strictly after a cursor in a list's order.

`OFFSET 500000` makes the database walk half a million rows before answering; a keyset page
instead asks for the rows *after* the last one shown in the list's order, which the database
answers from the matching index (`company_entity_name_idx` for `(entity, name, id)`, and so on)
at the same cost on page 1 and page 10,000. The order must end with the id so no two rows tie and
no row is skipped or repeated. The API's lists (`axiomatic.api.pagination`) and the sales pages
(`crm.selectors.paging`) both page through `keyset_after`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import F, OrderBy, Q, QuerySet, Value

from axiomatic.ordering import RowValue, row_fields


@dataclass(frozen=True)
class OrderKey:
    """One column of a list's order."""

    field: str
    descending: bool = False
    nulls_last: bool = False


def order_keys(ordering) -> list[OrderKey]:
    """The view's `ordering` (strings like "-updated_at", or `F(...).asc(nulls_last=True)`)."""
    keys = []
    for item in ordering:
        if isinstance(item, str):
            keys.append(OrderKey(item.lstrip("-"), descending=item.startswith("-")))
        elif isinstance(item, OrderBy) and isinstance(item.expression, F):
            keys.append(OrderKey(item.expression.name, descending=item.descending, nulls_last=bool(item.nulls_last)))
        else:  # pragma: no cover - a programming error, caught by the tests of every list
            raise TypeError(f"Unsupported list ordering {item!r}")
    if not keys or keys[-1].field not in ("id", "pk"):
        raise TypeError("A list's ordering must end with the id, so that it is total and stable.")
    return keys


def _after(keys: list[OrderKey], values: list[Any]) -> Q:
    """Rows strictly after `values` in the order `keys` (NULLs last where the order says so)."""
    condition = Q(pk__in=[])  # "nothing" for the OR below
    equal_so_far = Q()
    for key, value in zip(keys, values, strict=True):
        op = "lt" if key.descending else "gt"
        if value is None:
            later = Q(pk__in=[])  # NULLs come last: nothing sorts after a NULL but other NULLs
            same = Q(**{f"{key.field}__isnull": True})
        else:
            later = Q(**{f"{key.field}__{op}": value})
            if key.nulls_last:
                later |= Q(**{f"{key.field}__isnull": True})
            same = Q(**{key.field: value})
        condition |= equal_so_far & later
        equal_so_far &= same
    return condition


def _leading_bound(keys: list[OrderKey], values: list[Any]) -> Q:
    """A redundant range on the first column, so the ordering index starts the scan at the cursor."""
    key, value = keys[0], values[0]
    if value is None:
        return Q(**{f"{key.field}__isnull": True}) if key.nulls_last else Q()
    bound = Q(**{f"{key.field}__{'lte' if key.descending else 'gte'}": value})
    return bound | Q(**{f"{key.field}__isnull": True}) if key.nulls_last else bound


def keyset_after(queryset: QuerySet, keys: list[OrderKey], values: list[Any]) -> QuerySet:
    """The rows of `queryset` strictly after `values` in the order `keys`.

    Where the order allows it, `(a, b, id) > (x, y, z)`: PostgreSQL seeks the ordering index to
    that row, also when the first column has few distinct values (contacts by last name, where the
    expanded OR form scanned every row of the cursor's surname). Otherwise the expanded form, with
    a redundant range on the first column so the index scan still starts near the cursor.
    """
    fields = None
    if not any(key.nulls_last for key in keys):
        fields = row_fields(queryset.model, [(key.field, key.descending) for key in keys], values)
    if fields is None:
        return queryset.filter(_leading_bound(keys, values) & _after(keys, values))
    columns = RowValue(*(F(field.attname) for field in fields))
    bound = RowValue(*(Value(value, output_field=field) for field, value in zip(fields, values, strict=True)))
    lookup = "lt" if keys[0].descending else "gt"
    return queryset.alias(_cursor_row=columns).filter(**{f"_cursor_row__{lookup}": bound})
