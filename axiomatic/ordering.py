"""Finding a text search's first matches the fast way, whatever the term.

Page 1 of a search (`walk_first`): walk the list's ordering index from the start, testing each
row, for at most `WALK_ROWS` rows of the entity. A term that matches 1 % of the rows or more
fills a page within those 5,000 rows (a millisecond or two; all 5,000 cost 3–5 ms at a million
companies on a 2-core machine), whatever PostgreSQL estimates. Only when the walk comes back
short are the matches, now known to be rare near the start or together further on, found through
the trigram index, counted and sorted in one scan (`sorted_first`: a window counts them, so the
list's capped count does not read them a second time). The walk is forced (bitmap and sequential
scans and parallel workers off for that one statement; starting the workers alone cost 15 ms, and
for a term it expects to be rare PostgreSQL would read the whole table instead): PostgreSQL's
estimate of a substring's matches is often far too low (a fragment such as "l GmbH", whose only trigrams are
those of "GmbH": 100 estimated, 100,000 read), and it would then read every trigram candidate
and sort the few real matches, 150–300 ms at a million rows, where the walk finds a 1 % term's
first page within its 5,000 rows.

The rest of this docstring is how later pages (cursors) choose:

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
from django.db import connections, models
from django.db.models import Count, F, Func, QuerySet, Window
from django.db.models.expressions import RawSQL

from axiomatic.db import is_postgres

SORT_MATCHES_UP_TO = 10_000
WALK_ROWS = 5_000  # rows of the entity a page-1 walk reads at most before the trigram index is asked


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
    return sort_matches(queryset, order)


def sort_matches(queryset: QuerySet, order: list[tuple[str, bool]]) -> QuerySet:
    """`queryset` ordered by `order` written as one row value, which no index serves: its matches
    are found through the trigram index and sorted (where the order is not one row value, or not
    on PostgreSQL, unchanged)."""
    fields = row_fields(queryset.model, order) if is_postgres(queryset.db) else None
    if fields is None:
        return queryset
    row = RowValue(*(F(field.attname) for field in fields))
    return queryset.order_by(row.desc() if order[0][1] else row.asc())


def _walk_bound_sql(model, fields: list[models.Field], descending: bool, connection) -> str:
    """The last of the entity's first `WALK_ROWS` rows in the list's order, as one row value. The
    entity is the transaction's (row-level security's `app.entity_id`), so the API, the pages and
    the header search need not pass it; without one the bound is NULL and the walk finds nothing."""
    from axiomatic.rls import ENTITY_SETTING

    quote = connection.ops.quote_name
    entity = f"(SELECT nullif(current_setting('{ENTITY_SETTING}', true), '')::uuid)"
    columns = ", ".join(quote(field.column) for field in fields)
    forward = " DESC" if descending else ""
    backward = "" if descending else " DESC"
    return (
        f"SELECT {columns} FROM (SELECT {columns} FROM {quote(model._meta.db_table)} WHERE entity_id = {entity} "
        f"ORDER BY {', '.join(quote(f.column) + forward for f in fields)} LIMIT {WALK_ROWS}) AS head "
        f"ORDER BY {', '.join(quote(f.column) + backward for f in fields)} LIMIT 1"
    )


# Sequential scans off too: for a term it expects to be rare, PostgreSQL would rather read the whole
# table and sort the few matches (100 ms at half a million contacts) than walk the bounded range.
_WALK_ON = (
    "SET LOCAL enable_bitmapscan = off; SET LOCAL enable_seqscan = off; SET LOCAL max_parallel_workers_per_gather = 0;"
)
_WALK_OFF = (
    "SET LOCAL enable_bitmapscan TO DEFAULT; SET LOCAL enable_seqscan TO DEFAULT; "
    "SET LOCAL max_parallel_workers_per_gather TO DEFAULT"
)


def walk_first(queryset: QuerySet, order: list[tuple[str, bool]], limit: int) -> list | None:
    """The primary keys of the first `limit` rows of `queryset` (a search's matches) in `order`,
    found by walking the order's index through at most the entity's first `WALK_ROWS` rows (see
    the module docstring); None when that walk finds fewer (the caller then uses
    `order_matches`), or where the order is not one row value, or not on PostgreSQL.

    One round trip: bitmap and sequential scans and parallel workers off, the walk, all back as they were, sent
    as one string (so the settings cannot outlive the statement that needs them).
    """
    if not is_postgres(queryset.db):
        return None
    model = queryset.model
    fields = row_fields(model, order)
    if fields is None:
        return None
    connection = connections[queryset.db]
    descending = order[0][1]
    bound = RawSQL(_walk_bound_sql(model, fields, descending, connection), [])
    walk = (
        queryset.alias(_walk_row=RowValue(*(F(field.attname) for field in fields)))
        .filter(**{f"_walk_row__{'gte' if descending else 'lte'}": bound})
        .values_list("pk", flat=True)[:limit]
    )
    try:
        sql, params = walk.query.sql_with_params()
    except EmptyResultSet:  # a filter Django knows matches nothing: the walk is complete, and empty
        return []
    with connection.cursor() as cursor:
        cursor.execute(f"{_WALK_ON} {sql}; {_WALK_OFF}", params)
        raw = cursor.cursor
        for _ in range(_WALK_ON.count(";")):  # past the settings: the walk's rows
            raw.nextset()
        found = [row[0] for row in raw.fetchall()]
    return found if len(found) >= limit else None


def sorted_first(queryset: QuerySet, order: list[tuple[str, bool]], limit: int) -> tuple[list, int] | None:
    """The primary keys of the first `limit` matches of `queryset` in `order` and the number of all
    its matches, from one scan: the matches found through the trigram index, counted by a window
    over all of them and sorted (`count(*) OVER ()`), where a separate capped count would read
    them a second time. None where the order is not one row value, or not on PostgreSQL."""
    fields = row_fields(queryset.model, order) if is_postgres(queryset.db) else None
    if fields is None:
        return None
    row = RowValue(*(F(field.attname) for field in fields))
    matches = (
        queryset.annotate(_matches=Window(Count("pk")))
        .order_by(row.desc() if order[0][1] else row.asc())
        .values_list("pk", "_matches")[:limit]
    )
    try:
        rows = list(matches)
    except EmptyResultSet:
        return [], 0
    return [pk for pk, _ in rows], (rows[0][1] if rows else 0)


def first_matches_counted(queryset: QuerySet, order: list[tuple[str, bool]], limit: int) -> tuple[QuerySet, int | None]:
    """`first_matches`, with the number of matches when finding them counted them anyway (the
    sorted fallback, `sorted_first`); None when the caller must count (after a walk)."""
    found = walk_first(queryset, order, limit)
    if found is not None:
        return queryset.filter(pk__in=found), None
    sorted_ = sorted_first(queryset, order, limit)
    if sorted_ is not None:
        ids, count = sorted_
        return sort_matches(queryset.filter(pk__in=ids), order), count
    return order_matches(queryset, order), None


def first_matches(queryset: QuerySet, order: list[tuple[str, bool]], limit: int) -> QuerySet:
    """`queryset` (a search's matches, ordered by `order`) narrowed to its first `limit` rows the
    fast way: the bounded walk's rows by primary key; when it comes back short, the matches sorted
    (`sort_matches`), whatever PostgreSQL expects: a term that is frequent yet missing from the
    walk sits together late in the order (a surname), where walking for it read 230,000 index
    entries (0.4 s) and sorting its 11,000 matches takes 20–40 ms. Walks that fall back without a
    row-value order (leads' mixed directions) keep `order_matches`. Page 1 of the API's lists, the
    sales pages and the header search. Slice the result to `limit` as before; the rows and their
    order are the same either way."""
    found = walk_first(queryset, order, limit)
    if found is not None:
        return queryset.filter(pk__in=found)
    if is_postgres(queryset.db) and row_fields(queryset.model, order) is not None:
        return sort_matches(queryset, order)
    return order_matches(queryset, order)
