"""Recording when an API key was last used, once the request is over.

The authentication marks the request with its key; this middleware writes `last_used_at` after
the view has returned. Middleware runs outside the view's transaction (ATOMIC_REQUESTS wraps only
the view), so the write neither holds the key's row lock for the whole request nor disappears
with a request that failed and rolled back: a 400, 403 or 500 is a use of the key too.
"""

from __future__ import annotations

import logging

from django.db import DatabaseError

from apikeys.services import api_key_touch

logger = logging.getLogger("apikeys")
_ATTRIBUTE = "_api_key_used"


def api_key_mark_used(request, api_key) -> None:
    """Remember that `request` (a DRF or Django request) authenticated with `api_key`."""
    setattr(getattr(request, "_request", request), _ATTRIBUTE, api_key)


class ApiKeyLastUsedMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        api_key = getattr(request, _ATTRIBUTE, None)
        if api_key is not None:
            try:
                api_key_touch(api_key)
            except DatabaseError:
                # Bookkeeping only: the answer stands even when the database just failed.
                logger.warning("Could not record the use of API key %s", api_key.pk, exc_info=True)
        return response
