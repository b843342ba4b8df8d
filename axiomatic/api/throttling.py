"""Request rate limits, counted in the shared cache (Redis when `REDIS_URL` is set).

- Per user: every API key of a user and their browser session share one budget of
  `API_RATE_LIMIT_PER_MINUTE` (more keys do not buy more requests).
- Per client address: failed API authentications (unknown, revoked, malformed keys) are counted;
  past `API_AUTH_FAILURE_LIMIT_PER_MINUTE` every Bearer request from that address is a 429 until
  the minute ends, valid keys included (otherwise the answer would still tell a guessed key
  from a wrong one).
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.core.cache import cache
from rest_framework.exceptions import Throttled
from rest_framework.throttling import BaseThrottle

from axiomatic.client_address import client_address

WINDOW_SECONDS = 60
logger = logging.getLogger("axiomatic.api")


def _window() -> tuple[int, float]:
    """The current one-minute window and the seconds left in it."""
    now = time.time()
    return int(now // WINDOW_SECONDS), WINDOW_SECONDS - (now % WINDOW_SECONDS)


def _count(cache_key: str) -> int | None:
    """Add one to a window counter; None when the cache cannot be reached.

    `cache.add` + `cache.incr` are atomic in Redis, so concurrent workers share one exact count.
    """
    try:
        cache.add(cache_key, 0, timeout=WINDOW_SECONDS * 2)
        try:
            return cache.incr(cache_key)
        except ValueError:  # expired between add and incr
            cache.set(cache_key, 1, timeout=WINDOW_SECONDS * 2)
            return 1
    except Exception:
        # The limit protects the service; an unreachable cache must not take the API down with it.
        logger.warning("Rate-limit cache unavailable; letting the request through", exc_info=True)
        return None


class ApiKeyRateThrottle(BaseThrottle):
    """A fixed one-minute window per user: all their API keys and their session together."""

    def allow_request(self, request, view) -> bool:
        user_id = getattr(request.user, "pk", None) if request.user is not None else None
        if not user_id:
            return True
        window, self._wait = _window()
        count = _count(f"ratelimit:user:{user_id}:{window}")
        return count is None or count <= settings.API_RATE_LIMIT_PER_MINUTE

    def wait(self) -> float:
        return max(1.0, float(int(self._wait) + 1))


def _auth_failure_key(request) -> str | None:
    address = client_address(request)
    return f"authfail:{address}:{_window()[0]}" if address else None


def auth_failures_check(request) -> None:
    """Refuse (429 with `Retry-After`) a Bearer request from an address past its failure budget."""
    cache_key = _auth_failure_key(request)
    if cache_key is None:
        return
    try:
        failures = cache.get(cache_key) or 0
    except Exception:
        logger.warning("Rate-limit cache unavailable; letting the request through", exc_info=True)
        return
    if failures >= settings.API_AUTH_FAILURE_LIMIT_PER_MINUTE:
        raise Throttled(
            wait=max(1, int(_window()[1]) + 1),
            detail="Too many failed authentications from this address; try again later.",
        )


def auth_failure_record(request) -> None:
    """Count one failed API authentication against the request's client address."""
    cache_key = _auth_failure_key(request)
    if cache_key is not None:
        _count(cache_key)
