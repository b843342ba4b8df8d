"""Per-key request rate limit, counted in the shared cache (Redis when `REDIS_URL` is set)."""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import BaseThrottle

WINDOW_SECONDS = 60
logger = logging.getLogger("axiomatic.api")


class ApiKeyRateThrottle(BaseThrottle):
    """A fixed one-minute window per API key (or per session user).

    `cache.add` + `cache.incr` are atomic in Redis, so concurrent workers share one exact count.
    """

    def allow_request(self, request, view) -> bool:
        api_key = request.auth if getattr(request.auth, "pk", None) else None
        if api_key is not None:
            ident = f"key:{api_key.pk}"
        elif request.user is not None and getattr(request.user, "pk", None):
            ident = f"user:{request.user.pk}"
        else:
            return True
        now = time.time()
        window = int(now // WINDOW_SECONDS)
        self._wait = WINDOW_SECONDS - (now % WINDOW_SECONDS)
        cache_key = f"ratelimit:{ident}:{window}"
        try:
            cache.add(cache_key, 0, timeout=WINDOW_SECONDS * 2)
            try:
                count = cache.incr(cache_key)
            except ValueError:  # expired between add and incr
                cache.set(cache_key, 1, timeout=WINDOW_SECONDS * 2)
                count = 1
        except Exception:
            # The limit protects the service; an unreachable cache must not take the API down with it.
            logger.warning("Rate-limit cache unavailable; letting the request through", exc_info=True)
            return True
        return count <= settings.API_RATE_LIMIT_PER_MINUTE

    def wait(self) -> float:
        return max(1.0, float(int(self._wait) + 1))
