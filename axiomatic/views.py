"""Project-level views: the JSON error pages for /api/ (probes: axiomatic/health.py)."""

from __future__ import annotations

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.defaults import bad_request, page_not_found, server_error

from axiomatic.middleware import is_api_path


@csrf_exempt  # an unknown route is a 404 for every method, never a CSRF 403 page
def api_not_found(request, *args, **kwargs):
    return JsonResponse({"error": f"No API route matches {request.method} {request.path}."}, status=404)


def handler400(request, exception=None):
    """Django's own 400s (a disallowed Host header, too many query parameters seen by a middleware)."""
    if is_api_path(request.path):
        return JsonResponse({"error": "Bad request."}, status=400)
    return bad_request(request, exception)


def handler404(request, exception=None):
    if is_api_path(request.path):
        return api_not_found(request)
    return page_not_found(request, exception)


def handler500(request):
    if is_api_path(request.path):
        return JsonResponse({"error": "Internal server error."}, status=500)
    return server_error(request)
