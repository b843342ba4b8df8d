"""Test-only URL map for tests/test_operations.py: the project's routes plus views that run slow
or failing SQL on purpose. Used with `@pytest.mark.urls("tests.ops_urls")` and, for the gunicorn
tests, through tests/ops_settings.py; never mounted by the application.
"""

import psycopg
from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.urls import path

from axiomatic.api.viewsets import EntityScopedViewSet, ListMixin
from axiomatic.urls import handler404, handler500
from axiomatic.urls import urlpatterns as project_urlpatterns
from crm.models import Company

__all__ = ["handler404", "handler500", "urlpatterns"]

SLOW_COMPANY = "Written before the slow query"


def _over_the_statement_timeout() -> None:
    """A real query cancelled by PostgreSQL's statement_timeout (10 ms, for this transaction only)."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL statement_timeout = 10")
        cursor.execute("SELECT pg_sleep(1)")


class SlowQueryViewSet(ListMixin, EntityScopedViewSet):
    """Writes a row, then runs a query over the statement timeout, inside a DRF view."""

    queryset = Company.objects.all()
    list_key = "companies"

    def list(self, request, *args, **kwargs):
        Company.objects.create(entity=request.entity, name=SLOW_COMPANY)
        _over_the_statement_timeout()
        return super().list(request, *args, **kwargs)


def slow_page(request):
    """A page (plain Django view) whose query is cancelled by the statement timeout."""
    _over_the_statement_timeout()
    return HttpResponse("never")


def dropped_connection(request):
    """The database ends this request's session mid-request (as a restart or failover would): an
    administrator connection terminates the request's backend between two of its queries."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    db = connection.settings_dict
    with psycopg.connect(
        host=db["HOST"] or None, port=db["PORT"] or None, user=db["USER"] or None,
        password=db["PASSWORD"] or None, dbname=db["NAME"], autocommit=True,
    ) as admin:  # fmt: skip
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"never": True})


def sleep_then_answer(request):
    """Runs 1.5 s (inside the web statement timeout), for the graceful-shutdown test."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(1.5)")
    return JsonResponse({"slept": True})


def queue_echo_task(request):
    """Queues tests.test_operations.echo_request_id during a request."""
    from tests.test_operations import echo_request_id

    echo_request_id.delay()
    return JsonResponse({"queued": True})


urlpatterns = [
    path("api/crm/test-slow-query", SlowQueryViewSet.as_view({"get": "list"})),
    path("api/test-dropped-connection", dropped_connection),
    path("api/test-queue-echo", queue_echo_task),
    path("test-slow-page", slow_page),
    path("test-sleep", sleep_then_answer),
    *project_urlpatterns,
]
