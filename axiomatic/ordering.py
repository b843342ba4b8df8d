"""Ordering a text search's matches so that PostgreSQL finds them the fast way.

A list ordered by (last name, first name, id) has an index in that order, and with `LIMIT 51`
PostgreSQL likes to walk it, testing each row against the search, expecting matches to be
spread evenly. Matches of a surname are not: they sit together, and "zhang" walked 490,000
contacts to reach them (0.8 s). Through the trigram index instead, the matches are found
directly and sorted: a cost that grows with the number of matches, not with their place in the
order.

`order_matches` therefore asks the planner how many rows the search will match (EXPLAIN, no
execution, about a millisecond) and, when that is at most `SORT_MATCHES_UP_TO`, orders by the same
columns written as one row value `(a, b, id)`, which sorts the same but which no index serves, so
the matches are collected and sorted (at a million rows: a 10,000-match sort costs about 50 ms,
the walk to a late surname 800 ms). Above that, matches are common enough that the walk meets
them quickly, while sorting them all would not be quick (a word in one company name of twenty:
50,000 matches, 45 ms walked, 210 ms sorted). The planner's estimate is rough (within about a
factor of two on trigram searches), which is what the margin between the two costs allows for.
PostgreSQL only; elsewhere the order is applied as it is.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db import models
from django.db.models import F, Func, QuerySet

from axiomatic.db import is_postgres

SORT_MATCHES_UP_TO = 10_000


class RowValue(Func):
    """`(a, b, c)`: a row value, compared (and sorted) column by column as one value."""

    function = ""
    output_field = models.Field()


def _field(model, name: str) -> models.Field:
    return model._meta.pk if name == "pk" else model._meta.get_field(name)


def row_fields(model, order: list[tuple[str, bool]], values: list[Any] | None = None) -> list[models.Field] | None:
    """The model fields of `order` ([(field, descending)]) when they can act as one row value:
    one direction for all, plain non-NULL columns (a NULL in a row value compares as unknown),
    and no NULL among `values` when given."""
    if len({descending for _, descending in order}) != 1 or (values is not None and None in values):
        return None
    fields = []
    for name, _ in order:
        field = _field(model, name)
        if field.is_relation or not field.concrete or field.null:
            return None
        fields.append(field)
    return fields


def expected_rows(queryset: QuerySet) -> float:
    """The planner's estimate of the rows `queryset` matches (EXPLAIN only: nothing is run)."""
    try:
        plan = json.loads(queryset.order_by().values("pk").explain(format="json"))
        return float(plan[0]["Plan"]["Plan Rows"])
    except (EmptyResultSet, ValueError):  # a filter Django knows matches nothing (`pk__in=[]`): no plan
        return 0.0


def order_matches(queryset: QuerySet, order: list[tuple[str, bool]]) -> QuerySet:
    """`queryset`, a search's matches already ordered by `order` ([(field, descending)]), ordered
    the same way by one row value when PostgreSQL expects few matches (see the module docstring);
    otherwise unchanged."""
    if not is_postgres(queryset.db):
        return queryset
    fields = row_fields(queryset.model, order)
    if fields is None or expected_rows(queryset) > SORT_MATCHES_UP_TO:
        return queryset
    row = RowValue(*(F(field.attname) for field in fields))
    return queryset.order_by(row.desc() if order[0][1] else row.asc())
