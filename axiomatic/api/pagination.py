"""List pagination: pages (`page`, `pageSize`, legacy `limit`) and keyset cursors (`cursor`).

Every list answers `{"<plural>": [...], "page", "pageSize", "total", "totalExact", "hasMore",
"nextCursor"}` and costs one SQL query, whatever its size or depth:

- The page is read with one row more than asked (that row only says whether more follow), and
  the total rides along in the same query as a scalar subquery: a maintained counter for an
  unfiltered list (exact, O(1); see `axiomatic.counters`), an exact count for small or nested
  lists, and for a filtered list a count that stops at 10,001 rows (`total` 10000 and
  `totalExact: false` beyond 10,000).
- `nextCursor` names the last row's position in the list's own order (ties broken by id), signed
  so it cannot be forged or replayed against another entity, path, filter or page size. Sent back
  as `cursor`, the next page starts right after that row through the ordering index, so page
  100,000 costs what page 1 costs, and rows inserted or deleted meanwhile never make a walk skip
  or repeat a row that existed throughout.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import re
import uuid
from typing import Any

from django.core import signing
from django.db.models import QuerySet, Value
from django.db.models.expressions import RawSQL
from django.db.models.sql import Query
from rest_framework import exceptions
from rest_framework.pagination import BasePagination
from rest_framework.response import Response

from axiomatic.counters import counter_subquery, counters_supported
from axiomatic.db import read_connection
from axiomatic.keyset import keyset_after, order_keys
from axiomatic.ordering import first_matches_counted, order_matches
from axiomatic.totals import COUNT_CAP, is_total_known_over_cap

_INTEGER = re.compile(r"[+-]?\d{1,9}")
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
MAX_PAGE = 10_000_000  # beyond any real list; keeps OFFSET far inside PostgreSQL's bigint
PAGINATION_PARAMS = frozenset({"entityId", "page", "pageSize", "limit", "cursor"})
_CURSOR_SALT = "axiomatic.api.list-cursor"
TOTAL_ALIAS = "_list_total"
DEFERRED_JOIN_OFFSET = 1_000  # past this, OFFSET pages read ids first (see `_fetch`)


def _int_param(request, name: str, *, minimum: int, maximum: int | None = None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if not _INTEGER.fullmatch(raw.strip()):
        bound = f"from {minimum} to {maximum}" if maximum else f"of at least {minimum} (at most 9 digits)"
        raise exceptions.ValidationError({name: [f"{name} must be an integer {bound}."]})
    value = int(raw)
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum else f"at least {minimum}"
        raise exceptions.ValidationError({name: [f"{name} must be {bound}."]})
    return value


def _encode(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID | decimal.Decimal):
        return str(value)
    return value


def _row_value(row, field: str):
    if isinstance(row, dict):
        return row.get(field, row.get(f"{field}_id"))
    return getattr(row, field if hasattr(row, field) else f"{field}_id")


def _count_subquery(queryset: QuerySet, cap: int | None) -> RawSQL:
    if queryset.query.is_empty():  # `.none()`: a filter that can match nothing
        return RawSQL("0", [])
    inner = queryset.order_by().values("pk")
    if cap is not None:
        inner = inner[: cap + 1]
    sql, params = inner.query.sql_with_params()
    return RawSQL(f"SELECT COUNT(*) FROM ({sql}) AS counted", params)


class EntityPagination(BasePagination):
    """Pages and cursors of every list (see the module docstring)."""

    @staticmethod
    def page_params(request) -> tuple[int | None, int | None, int | None, str | None]:
        """`page`, `pageSize`, `limit` and `cursor`, checked (400 when malformed). A list answered as
        a whole (a CSV download) checks them too, so it refuses what the JSON list refuses."""
        page = _int_param(request, "page", minimum=1, maximum=MAX_PAGE)
        page_size = _int_param(request, "pageSize", minimum=1, maximum=MAX_PAGE_SIZE)
        limit = _int_param(request, "limit", minimum=1, maximum=MAX_PAGE_SIZE)
        cursor = request.query_params.get("cursor")
        if cursor is not None and page is not None:
            raise exceptions.ValidationError({"cursor": ["Send either cursor or page, not both."]})
        return page, page_size, limit, cursor

    def paginate_queryset(self, queryset, request, view=None):
        page, page_size, limit, cursor = self.page_params(request)

        self.list_key = view.list_key
        self.keys = order_keys(view.ordering)
        filters = sorted((k, v) for k, vs in request.query_params.lists() if k not in PAGINATION_PARAMS for v in vs)
        self.scope = self._scope(request, filters)
        total = self._total_expression(queryset, request, view, filtered=bool(filters))

        searching = any(request.query_params.get(name) for name in getattr(view, "search_params", ()))
        offset = 0
        if cursor is not None:
            values, page_size = self._decode(cursor, page_size)
            queryset = keyset_after(queryset, self.keys, values)
            self.page = None
        else:
            if page_size is None:
                page_size = limit if (limit is not None and page is None) else DEFAULT_PAGE_SIZE
            self.page = page or 1
            offset = (self.page - 1) * page_size
        self.page_size = page_size
        if searching and not any(key.nulls_last for key in self.keys):
            queryset, counted = self._search_order(queryset, first_page=cursor is None and offset == 0)
            if counted is not None:  # the search counted its matches as it found them
                total = Value(counted if self.cap is None else min(counted, self.cap + 1))

        rows = self._fetch(queryset, total, offset, page_size)
        self.has_more = len(rows) > page_size
        rows = rows[:page_size]
        if rows and queryset.query.group_by is None:
            count = rows[0][TOTAL_ALIAS] if isinstance(rows[0], dict) else getattr(rows[0], TOTAL_ALIAS)
        else:
            count = self._count_alone(total)
        self.total_exact = self.cap is None or count <= self.cap
        self.total = count if self.total_exact else self.cap
        self.next_cursor = self._encode(rows[-1]) if self.has_more else None
        return rows

    def _search_order(self, queryset, *, first_page: bool) -> tuple[QuerySet, int | None]:
        """A text search (the view's `search_params`) the fast way (axiomatic.ordering): page 1 by
        a bounded walk of the ordering index, then its rows by primary key; when the walk comes
        back short, the matches found, counted and sorted in one scan (the count then replaces the
        capped count); on later pages, the matches sorted when few instead of walked for."""
        order = [(key.field, key.descending) for key in self.keys]
        if first_page:
            return first_matches_counted(queryset, order, self.page_size + 1)
        return order_matches(queryset, order), None

    # --- totals ---------------------------------------------------------------------------------

    def _total_expression(self, queryset, request, view, *, filtered: bool):
        """The whole list's total as an SQL expression: counter, exact count or capped count."""
        self.cap = COUNT_CAP if filtered else None
        counter = getattr(view, "total_counter", None)
        if filtered and is_total_known_over_cap(request):
            return RawSQL("%s", [COUNT_CAP + 1])
        if filtered:
            return _count_subquery(queryset, COUNT_CAP)
        if counter and view.parent_resource is None and counters_supported():
            return counter_subquery(request.entity.pk, counter)
        return _count_subquery(queryset, None)

    @staticmethod
    def _fetch(queryset, total, offset: int, page_size: int) -> list:
        if queryset.query.group_by is not None:  # grouped lists (per-row aggregates) count separately
            return list(queryset[offset : offset + page_size + 1])
        if offset > DEFERRED_JOIN_OFFSET:
            # A deep page: skip the rows through the ordering index alone (ids only), then read
            # just this page's rows with their annotations — one more query, not a heavy scan.
            ids = list(queryset.values_list("pk", flat=True)[offset : offset + page_size + 1])
            rows = {row.pk: row for row in queryset.filter(pk__in=ids).annotate(**{TOTAL_ALIAS: total})}
            return [rows[pk] for pk in ids if pk in rows]
        return list(queryset.annotate(**{TOTAL_ALIAS: total})[offset : offset + page_size + 1])

    @staticmethod
    def _count_alone(total) -> int:
        """The total when no row carried it (an empty page, a grouped list): one query of its own."""
        connection = read_connection()  # the replica on a read path routed there
        query = Query(None)
        compiler = query.get_compiler(connection=connection)
        sql, params = total.resolve_expression(query).as_sql(compiler, connection)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {sql}", params)
            return int(cursor.fetchone()[0] or 0)

    # --- cursors --------------------------------------------------------------------------------

    @staticmethod
    def _scope(request, filters) -> str:
        entity_id = getattr(getattr(request, "entity", None), "pk", "")
        text = "\x00".join([str(entity_id), request.path, repr(filters)])
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:24]

    def _encode(self, row) -> str:
        values = [_encode(_row_value(row, key.field)) for key in self.keys]
        return signing.dumps({"s": self.scope, "n": self.page_size, "k": values}, salt=_CURSOR_SALT, compress=True)

    def _decode(self, cursor: str, page_size: int | None) -> tuple[list[Any], int]:
        """The cursor's position and page size (a pageSize sent with it must be the same)."""
        try:
            payload = signing.loads(cursor, salt=_CURSOR_SALT)
        except signing.BadSignature:
            raise exceptions.ValidationError({"cursor": ["Malformed cursor: send back a nextCursor as given."]})
        if not isinstance(payload, dict) or payload.get("s") != self.scope:
            raise exceptions.ValidationError(
                {"cursor": ["This cursor belongs to another list or other filters; repeat the same query."]}
            )
        if page_size is not None and page_size != payload.get("n"):
            raise exceptions.ValidationError(
                {"cursor": ["Send the same pageSize as the request that gave the cursor."]}
            )
        raw = payload.get("k")
        if not isinstance(raw, list) or len(raw) != len(self.keys):
            raise exceptions.ValidationError({"cursor": ["Malformed cursor: send back a nextCursor as given."]})
        return raw, int(payload["n"])

    def get_paginated_response(self, data):
        return Response(
            {
                self.list_key: data,
                "page": self.page,
                "pageSize": self.page_size,
                "total": self.total,
                "totalExact": self.total_exact,
                "hasMore": self.has_more,
                "nextCursor": self.next_cursor,
            }
        )

    # --- schema ---------------------------------------------------------------------------------

    def get_schema_operation_parameters(self, view):
        def param(name, description, schema):
            return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}

        return [
            param(
                "page", "Page number, from 1. Not with cursor.", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}
            ),
            param(
                "pageSize",
                f"Items per page, 1–{MAX_PAGE_SIZE} (default {DEFAULT_PAGE_SIZE}; with cursor, the cursor's).",
                {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE},
            ),
            param(
                "limit",
                "Legacy: the page size when page, pageSize and cursor are omitted.",
                {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE},
            ),
            param(
                "cursor",
                "The nextCursor of the previous page (same filters and pageSize): the next page at any depth, "
                "at the cost of the first. A malformed or foreign cursor → 400.",
                {"type": "string", "minLength": 1},
            ),
        ]

    def get_paginated_response_schema(self, schema):
        list_key = getattr(self, "list_key", "results")  # set by ApiAutoSchema per view
        return {
            "type": "object",
            "required": [list_key, "page", "pageSize", "total", "totalExact", "hasMore", "nextCursor"],
            "properties": {
                list_key: schema,
                "page": {"type": "integer", "nullable": True, "example": 1, "description": "Null with cursor."},
                "pageSize": {"type": "integer", "example": DEFAULT_PAGE_SIZE},
                "total": {
                    "type": "integer",
                    "example": 123,
                    "description": f"Exact for unfiltered lists; filtered lists stop counting at {COUNT_CAP}.",
                },
                "totalExact": {"type": "boolean", "description": f"False when a filtered list has over {COUNT_CAP}."},
                "hasMore": {"type": "boolean"},
                "nextCursor": {
                    "type": "string",
                    "nullable": True,
                    "description": "Send as cursor for the next page; null on the last page.",
                },
            },
        }
