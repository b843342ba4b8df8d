"""Request ids on every response, and the JSON envelope for errors outside DRF views."""

from __future__ import annotations

import logging
import re
import uuid

from django.http import JsonResponse

logger = logging.getLogger("axiomatic.api")
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


class RequestIdMiddleware:
    """Echo a client's `X-Request-Id` (when it is a sane token) or mint one; always answer it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        given = request.META.get("HTTP_X_REQUEST_ID", "")
        request.request_id = given if _SAFE_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        response = self.get_response(request)
        response["X-Request-Id"] = request.request_id
        return response


def is_api_path(path: str) -> bool:
    return path.startswith("/api/")


class ApiErrorMiddleware:
    """Unhandled exceptions under /api/ that escape DRF (e.g. in URL resolving) become JSON 500s."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not is_api_path(request.path):
            return None
        from axiomatic.ops.database import is_database_unavailable

        if is_database_unavailable(exception):
            return None  # a 503, not a 500: answered by axiomatic.ops.middleware.DatabaseUnavailableMiddleware
        logger.exception("Unhandled error under /api/", exc_info=exception)
        return JsonResponse({"error": "Internal server error."}, status=500)
