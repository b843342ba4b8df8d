"""Page-number pagination of the contract: `page`, `pageSize`, legacy `limit`."""

from __future__ import annotations

import re

from rest_framework import exceptions
from rest_framework.pagination import BasePagination
from rest_framework.response import Response

_INTEGER = re.compile(r"[+-]?\d{1,9}")
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


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


class EntityPagination(BasePagination):
    """`{"<plural>": [...], "page", "pageSize", "total", "hasMore"}` in two queries (count + page).

    `limit` is the legacy way to cap the page size and counts only when neither `page` nor
    `pageSize` is sent.
    """

    def paginate_queryset(self, queryset, request, view=None):
        page = _int_param(request, "page", minimum=1)
        page_size = _int_param(request, "pageSize", minimum=1, maximum=MAX_PAGE_SIZE)
        limit = _int_param(request, "limit", minimum=1, maximum=MAX_PAGE_SIZE)
        if page_size is None:
            page_size = limit if (limit is not None and page is None) else DEFAULT_PAGE_SIZE
        self.page = page or 1
        self.page_size = page_size
        self.list_key = view.list_key
        self.total = queryset.count()
        offset = (self.page - 1) * page_size
        if offset >= self.total:
            return []
        return list(queryset[offset : offset + page_size])

    def get_paginated_response(self, data):
        return Response(
            {
                self.list_key: data,
                "page": self.page,
                "pageSize": self.page_size,
                "total": self.total,
                "hasMore": self.page * self.page_size < self.total,
            }
        )

    def get_schema_operation_parameters(self, view):
        def param(name, description, minimum, maximum=None):
            schema = {"type": "integer", "minimum": minimum}
            if maximum:
                schema["maximum"] = maximum
            return {
                "name": name,
                "in": "query",
                "required": False,
                "description": description,
                "schema": schema,
            }

        return [
            param("page", "Page number, from 1.", 1),
            param(
                "pageSize",
                f"Items per page, 1–{MAX_PAGE_SIZE} (default {DEFAULT_PAGE_SIZE}).",
                1,
                MAX_PAGE_SIZE,
            ),
            param("limit", "Legacy: caps page size when page and pageSize are omitted.", 1, MAX_PAGE_SIZE),
        ]

    def get_paginated_response_schema(self, schema):
        list_key = getattr(self, "list_key", "results")  # set by ApiAutoSchema per view
        return {
            "type": "object",
            "required": [list_key, "page", "pageSize", "total", "hasMore"],
            "properties": {
                list_key: schema,
                "page": {"type": "integer", "example": 1},
                "pageSize": {"type": "integer", "example": DEFAULT_PAGE_SIZE},
                "total": {"type": "integer", "example": 123},
                "hasMore": {"type": "boolean"},
            },
        }
