"""Prometheus metrics, served at `/metrics` to `Authorization: Bearer <METRICS_TOKEN>` only.

What is counted (labels never hold ids, secrets or raw paths):

- `axiomatic_http_requests_total{route,method,status}` and
  `axiomatic_http_request_duration_seconds{route,method,status}` (histogram), `route` being the URL
  pattern (`/api/crm/leads/{leadId}`), `unmatched` for paths no route matches;
- `axiomatic_db_queries_total{route,method}`: SQL statements run while serving requests;
- `axiomatic_database_unavailable_total`: requests answered 503 because the database could not serve;
- `axiomatic_celery_tasks_total{task,outcome}` and `axiomatic_celery_task_duration_seconds{task}`;
- `axiomatic_outbound_emails_total{outcome}` and `axiomatic_webhook_deliveries_total{outcome}`, which
  the apps report through `record_outbound_email()` / `record_webhook_delivery()`.

Several processes (gunicorn workers, Celery prefork children): set `PROMETHEUS_MULTIPROC_DIR` to an
empty directory writable by all of them (gunicorn.conf.py empties it at start and tidies up after
dead workers); every process then writes its samples there and `/metrics` adds them up.
"""

from __future__ import annotations

import functools
import hmac
import os
import re

from django.conf import settings
from django.http import HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

HTTP_REQUESTS = Counter(
    "axiomatic_http_requests_total", "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
)  # fmt: skip
HTTP_LATENCY = Histogram(
    "axiomatic_http_request_duration_seconds", "Time to answer an HTTP request, by route template, method and status.",
    ["route", "method", "status"], buckets=LATENCY_BUCKETS,
)  # fmt: skip
DB_QUERIES = Counter(
    "axiomatic_db_queries_total", "SQL statements run while serving HTTP requests.", ["route", "method"]
)
DB_UNAVAILABLE = Counter(
    "axiomatic_database_unavailable_total", "Requests answered 503 because the database could not serve them."
)
CELERY_TASKS = Counter(
    "axiomatic_celery_tasks_total", "Celery task runs by task name and outcome.", ["task", "outcome"]
)
CELERY_TASK_DURATION = Histogram(
    "axiomatic_celery_task_duration_seconds", "Celery task run time.", ["task"],
    buckets=(0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0),
)  # fmt: skip
OUTBOUND_EMAILS = Counter(
    "axiomatic_outbound_emails_total", "Outbound email delivery attempts by outcome (sent, retry, failed, ...).",
    ["outcome"],
)  # fmt: skip
WEBHOOK_DELIVERIES = Counter(
    "axiomatic_webhook_deliveries_total", "Webhook delivery attempts by outcome (delivered, retry, failed, ...).",
    ["outcome"],
)  # fmt: skip

# Known outcomes start at 0 so that rate() and absence alerts work before the first event.
for _outcome in ("sent", "retry", "failed", "skipped"):
    OUTBOUND_EMAILS.labels(outcome=_outcome)
for _outcome in ("delivered", "retry", "failed"):
    WEBHOOK_DELIVERIES.labels(outcome=_outcome)

UNMATCHED_ROUTE = "unmatched"
_OUTCOME = re.compile(r"[a-z][a-z0-9_]{0,31}")
_REGEX_GROUP = re.compile(r"\(\?P<(\w+)>[^()]*\)")
_CONVERTER = re.compile(r"<(?:\w+:)?(\w+)>")


def _label(value: str) -> str:
    """An outcome as a label: a short lowercase token, else `other` (never an id or a message)."""
    value = str(value).strip().lower()
    return value if _OUTCOME.fullmatch(value) else "other"


def record_outbound_email(outcome: str) -> None:
    """Count one outbound email delivery attempt: `sent`, `retry`, `failed`, `skipped`, ..."""
    OUTBOUND_EMAILS.labels(outcome=_label(outcome)).inc()


def record_webhook_delivery(outcome: str) -> None:
    """Count one webhook delivery attempt: `delivered`, `retry`, `failed`, ..."""
    WEBHOOK_DELIVERIES.labels(outcome=_label(outcome)).inc()


def record_task(task_name: str, outcome: str, duration: float | None = None) -> None:
    CELERY_TASKS.labels(task=task_name, outcome=_label(outcome)).inc()
    if duration is not None:
        CELERY_TASK_DURATION.labels(task=task_name).observe(duration)


@functools.lru_cache(maxsize=512)
def route_template(route: str) -> str:
    """`api/crm/^leads/(?P<leadId>[^/.]+)$` or `lists/<uuid:listId>` → `/api/crm/leads/{leadId}`."""
    template = _REGEX_GROUP.sub(r"{\1}", route.replace("^", "").replace("$", ""))
    template = _CONVERTER.sub(r"{\1}", template)
    template = template.replace("\\", "")
    if any(ch in template for ch in "()[]*+?|"):  # a pattern we cannot spell: never leak its text
        return UNMATCHED_ROUTE
    return "/" + template.lstrip("/")


def request_route(request) -> str:
    match = getattr(request, "resolver_match", None)
    if match is None:
        from django.urls import Resolver404, resolve

        try:
            match = resolve(request.path_info)
        except Resolver404:
            return UNMATCHED_ROUTE
        except Exception:
            return UNMATCHED_ROUTE
    route = getattr(match, "route", None)
    return route_template(route) if route is not None else UNMATCHED_ROUTE


def observe_request(*, route: str, method: str, status: int, duration: float, queries: int) -> None:
    method = method if method in _METHODS else "other"
    HTTP_REQUESTS.labels(route=route, method=method, status=str(status)).inc()
    HTTP_LATENCY.labels(route=route, method=method, status=str(status)).observe(duration)
    if queries:
        DB_QUERIES.labels(route=route, method=method).inc(queries)


_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def exposition() -> bytes:
    """The text exposition of every metric (of all processes in multiprocess mode)."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def token_matches(request) -> bool:
    token = getattr(settings, "METRICS_TOKEN", "")
    if not token:
        return False
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


def metrics_response(request) -> HttpResponse | None:
    """The `/metrics` answer, or None when the token is unset or not sent: the caller then answers
    as for any unknown path (a 404 that says nothing about metrics)."""
    if request.method not in ("GET", "HEAD") or not token_matches(request):
        return None
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)
