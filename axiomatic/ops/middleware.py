"""Middleware for operations, placed right after RequestIdMiddleware (outermost first):

1. `ProbeMiddleware` answers `/livez`, `/readyz`, `/healthz` and `/metrics` before anything else
   runs: no session, no authentication, no host check or HTTPS redirect, no transaction.
2. `RequestObservabilityMiddleware` binds the request id to the logs (and to the Celery tasks the
   request queues), counts the SQL statements, and when the answer is ready writes one access log
   line and the request metrics, labelled by route template.
3. `DatabaseUnavailableMiddleware` turns "the database cannot serve" into 503 with `Retry-After`:
   JSON `{"error"}` under /api/, a plain page elsewhere, wherever the failure happened. A failure
   in the view reaches `process_exception` after ATOMIC_REQUESTS rolled the transaction back; one
   in another middleware (sessions, authentication, idempotency, the response phase) becomes
   Django's 500 first, and is recognised through `got_request_exception` (`on_request_exception`).
"""

from __future__ import annotations

import logging
import sys
import time

from django.conf import settings
from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.template.loader import render_to_string

from axiomatic import metrics
from axiomatic.health import PROBES
from axiomatic.logging import bind_request_id, unbind_request_id
from axiomatic.middleware import is_api_path
from axiomatic.ops.database import is_database_unavailable

access_logger = logging.getLogger("axiomatic.access")
logger = logging.getLogger("axiomatic.ops")

UNAVAILABLE_MESSAGE = "The service is temporarily unavailable; retry shortly."
_FLAG = "_axiomatic_database_unavailable"


class ProbeMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.method in ("GET", "HEAD"):
            probe = PROBES.get(request.path_info)
            if probe is not None:
                return probe(request)
            if request.path_info == "/metrics":
                response = metrics.metrics_response(request)
                if response is not None:
                    return response
        return self.get_response(request)


class _QueryCounter:
    """A `connection.execute_wrapper` counting statements (executemany counts once)."""

    def __init__(self):
        self.count = 0

    def __call__(self, execute, sql, params, many, context):
        self.count += 1
        return execute(sql, params, many, context)


def _entity_id(request, response) -> str | None:
    entity = getattr(request, "entity", None)  # pages set it on the Django request
    if entity is None:
        drf_request = (getattr(response, "renderer_context", None) or {}).get("request")
        entity = getattr(drf_request, "entity", None)
    pk = getattr(entity, "pk", None)
    return str(pk) if pk is not None else None


def _api_key_id(request) -> str | None:
    # DRF copies `request.auth` (the ApiKey for Bearer requests; None for sessions) onto the Django request.
    pk = getattr(getattr(request, "auth", None), "pk", None)
    return str(pk) if pk is not None else None


class RequestObservabilityMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = getattr(request, "request_id", None)
        token = bind_request_id(request_id)
        counter = _QueryCounter()
        started = time.perf_counter()
        try:
            with connection.execute_wrapper(counter):
                response = self.get_response(request)
            duration = time.perf_counter() - started
            route = metrics.request_route(request)
            metrics.observe_request(
                route=route,
                method=request.method,
                status=response.status_code,
                duration=duration,
                queries=counter.count,
            )
            access_logger.log(
                logging.WARNING if response.status_code >= 500 else logging.INFO,
                "%s %s %s %.1fms",
                request.method,
                route,
                response.status_code,
                duration * 1000,
                extra={
                    "request_id": request_id,
                    "entity_id": _entity_id(request, response),
                    "api_key_id": _api_key_id(request),
                    "route": route,
                    "method": request.method,
                    "status": response.status_code,
                    "duration_ms": round(duration * 1000, 1),
                    "db_queries": counter.count,
                },
            )
            return response
        finally:
            unbind_request_id(token)


def database_unavailable_response(request) -> HttpResponse:
    """503 with `Retry-After`: the JSON envelope under /api/, a plain page elsewhere."""
    metrics.DB_UNAVAILABLE.inc()
    if is_api_path(request.path):
        response = JsonResponse({"error": UNAVAILABLE_MESSAGE}, status=503)
    else:
        response = HttpResponse(render_to_string("503.html"), status=503, content_type="text/html; charset=utf-8")
    response["Retry-After"] = str(settings.DB_UNAVAILABLE_RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    return response


def on_request_exception(sender, request=None, **kwargs) -> None:
    """`got_request_exception`: remember that this request failed because the database is away."""
    if request is not None and is_database_unavailable(sys.exc_info()[1]):
        setattr(request, _FLAG, True)


class DatabaseUnavailableMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if getattr(request, _FLAG, False) and response.status_code == 500:
            return database_unavailable_response(request)
        return response

    def process_exception(self, request, exception):
        if not is_database_unavailable(exception):
            return None
        logger.warning("Database unavailable: %s: %s", type(exception).__name__, str(exception).strip()[:300])
        return database_unavailable_response(request)
