"""Project-level views: health check and the JSON error pages for /api/."""

from __future__ import annotations

from django.db import connection
from django.http import JsonResponse
from django.views.decorators.http import require_GET
from django.views.defaults import page_not_found, server_error

from axiomatic.middleware import is_api_path


@require_GET
def healthz(request):
    """200 when the database answers, 503 otherwise (for load balancers and orchestrators)."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:
        return JsonResponse({"status": "unavailable"}, status=503)
    return JsonResponse({"status": "ok"})


def api_not_found(request, *args, **kwargs):
    return JsonResponse({"error": f"No API route matches {request.method} {request.path}."}, status=404)


def handler404(request, exception=None):
    if is_api_path(request.path):
        return api_not_found(request)
    return page_not_found(request, exception)


def handler500(request):
    if is_api_path(request.path):
        return JsonResponse({"error": "Internal server error."}, status=500)
    return server_error(request)
