"""Request rate limits, counted in the shared cache (Redis when `REDIS_URL` is set).

- Per user: every API key of a user and their browser session share one budget of
  `API_RATE_LIMIT_PER_MINUTE` (more keys do not buy more requests).
- Per client address: failed API authentications (unknown, revoked, malformed keys) are counted;
  past `API_AUTH_FAILURE_LIMIT_PER_MINUTE` every Bearer request from that address is a 429 until
  the minute ends, valid keys included (otherwise the answer would still tell a guessed key
  from a wrong one).

One Redis round trip per request: a small Lua script (`_ADMIT`) reads the address's failure
count and, when under its budget, adds one to a counter, atomically, so concurrent workers share
exact counts. A Bearer request with a usable key runs it once, after the key lookup, counting the
user's request (`api_request_admit`; the throttle then compares the count without asking Redis
again); a refused key runs it once to count the failure (`auth_failure_record`); a browser
session's request runs it in the throttle. An address this process has seen fail in the current
window is checked once more before the key lookup (`auth_failures_check`), so a guesser past its
budget costs no database query; this memo only decides *when* to ask Redis, never the answer.
Without Redis (the demo's local-memory cache) the same counts are kept with `add`/`incr`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.conf import settings
from django.core.cache import DEFAULT_CACHE_ALIAS, caches
from django.core.cache.backends.redis import RedisCache
from rest_framework.exceptions import Throttled
from rest_framework.throttling import BaseThrottle

from axiomatic.client_address import client_address

WINDOW_SECONDS = 60
logger = logging.getLogger("axiomatic.api")


def _window() -> tuple[int, float]:
    """The current one-minute window and the seconds left in it."""
    now = time.time()
    return int(now // WINDOW_SECONDS), WINDOW_SECONDS - (now % WINDOW_SECONDS)


# KEYS[1]: the address's failed-authentication counter, or "" (no address: not counted);
# KEYS[2]: the counter to add one to (a user's requests, or that same failure counter).
# ARGV[1]: the failure budget, ARGV[2]: the counters' lifetime in seconds.
# -1 when the address is past its budget (nothing counted), else the counter's new value.
_ADMIT = """
if KEYS[1] ~= '' then
  local failures = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
  if failures >= tonumber(ARGV[1]) then return -1 end
end
local count = redis.call('INCR', KEYS[2])
if count == 1 then redis.call('EXPIRE', KEYS[2], ARGV[2]) end
return count
"""
REFUSED = -1
_scripts: dict[int, Any] = {}
# Addresses this process saw fail (address -> window): checked before the key lookup as well.
_suspects: dict[str, int] = {}
_SUSPECTS_MAX = 10_000
_COUNTED = "_rate_limit_count"  # on the HttpRequest: the user's count, taken with the authentication


def _unavailable() -> None:
    # The limit protects the service; an unreachable cache must not take the API down with it.
    logger.warning("Rate-limit cache unavailable; letting the request through", exc_info=True)


def _admit(failure_key: str | None, counter_key: str) -> int | None:
    """`_ADMIT` in one round trip: REFUSED, the counter's new value, or None (cache unreachable)."""
    cache = caches[DEFAULT_CACHE_ALIAS]
    try:
        if isinstance(cache, RedisCache):
            backend = cache
            counter = backend.make_and_validate_key(counter_key)
            keys = [backend.make_and_validate_key(failure_key) if failure_key else "", counter]
            client = backend._cache.get_client(counter, write=True)
            script = _scripts.get(id(client))
            if script is None:
                script = _scripts[id(client)] = client.register_script(_ADMIT)
            limit = settings.API_AUTH_FAILURE_LIMIT_PER_MINUTE
            return int(script(keys=keys, args=[limit, WINDOW_SECONDS * 2], client=client))
        # Local-memory cache (the demo): the same counts in several steps.
        if failure_key and (cache.get(failure_key) or 0) >= settings.API_AUTH_FAILURE_LIMIT_PER_MINUTE:
            return REFUSED
        cache.add(counter_key, 0, timeout=WINDOW_SECONDS * 2)
        try:
            return cache.incr(counter_key)
        except ValueError:  # expired between add and incr
            cache.set(counter_key, 1, timeout=WINDOW_SECONDS * 2)
            return 1
    except Exception:
        _unavailable()
        return None


def _user_key(user_id, window: int) -> str:
    return f"ratelimit:user:{user_id}:{window}"


class ApiKeyRateThrottle(BaseThrottle):
    """A fixed one-minute window per user: all their API keys and their session together."""

    def allow_request(self, request, view) -> bool:
        user_id = getattr(request.user, "pk", None) if request.user is not None else None
        if not user_id:
            return True
        window, self._wait = _window()
        http_request = getattr(request, "_request", request)
        counted = getattr(http_request, _COUNTED, None)
        if counted is not None and counted[0] == user_id:
            count = counted[1]  # taken in the authentication's round trip (`api_request_admit`)
        else:
            count = _admit(None, _user_key(user_id, window))
        return count is None or count <= settings.API_RATE_LIMIT_PER_MINUTE

    def wait(self) -> float:
        return max(1.0, float(int(self._wait) + 1))


def _auth_failure_key(request, window: int) -> tuple[str | None, str | None]:
    address = client_address(request)
    return address, (f"authfail:{address}:{window}" if address else None)


def _refuse() -> Throttled:
    return Throttled(
        wait=max(1, int(_window()[1]) + 1),
        detail="Too many failed authentications from this address; try again later.",
    )


def _suspect(address: str | None, window: int) -> None:
    if address is None:
        return
    if len(_suspects) >= _SUSPECTS_MAX:  # a wide guessing spree: start over (the memo is only a hint)
        _suspects.clear()
    _suspects[address] = window


def auth_failures_check(request) -> None:
    """Before the key lookup, for an address this process saw fail in this window: refuse (429
    with `Retry-After`) when it is past its failure budget. Other addresses ask nothing here;
    their budget is checked in the round trip after the lookup."""
    window = _window()[0]
    address, cache_key = _auth_failure_key(request, window)
    if cache_key is None or _suspects.get(address) != window:
        return
    try:
        failures = caches[DEFAULT_CACHE_ALIAS].get(cache_key) or 0
    except Exception:
        _unavailable()
        return
    if failures >= settings.API_AUTH_FAILURE_LIMIT_PER_MINUTE:
        raise _refuse()


def auth_failure_record(request) -> None:
    """Count one failed API authentication against the request's client address; 429 instead
    when the address is already past its budget."""
    window = _window()[0]
    address, cache_key = _auth_failure_key(request, window)
    if cache_key is None:
        return
    _suspect(address, window)
    if _admit(cache_key, cache_key) == REFUSED:
        raise _refuse()


def api_request_admit(request, user_id) -> None:
    """After a usable key was found: 429 when the address is past its failure budget, else count
    the user's request (kept on the request for `ApiKeyRateThrottle`): one round trip."""
    window = _window()[0]
    address, cache_key = _auth_failure_key(request, window)
    count = _admit(cache_key, _user_key(user_id, window))
    if count == REFUSED:
        _suspect(address, window)
        raise _refuse()
    setattr(getattr(request, "_request", request), _COUNTED, (user_id, count))
