"""`X-Bench-Queries`: how many SQL statements the request ran (bench/settings.py only)."""

from __future__ import annotations

from contextlib import ExitStack

from django.db import connections

QUERIES_HEADER = "X-Bench-Queries"


class QueryCountMiddleware:
    """Outermost middleware: counts every statement the request runs on any database alias
    (authentication, the entity setting for row-level security, the page, bookkeeping)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        count = 0

        def counting(execute, sql, params, many, context):
            nonlocal count
            count += 1
            return execute(sql, params, many, context)

        with ExitStack() as stack:
            for alias in connections:
                stack.enter_context(connections[alias].execute_wrapper(counting))
            response = self.get_response(request)
        response[QUERIES_HEADER] = str(count)
        return response
