"""Probes for load balancers and orchestrators (docs/operations.md).

- `GET /livez`: 200 while the process serves requests; touches nothing else.
- `GET /readyz`: 200 when the database and Redis (when configured) answer, else 503, with one
  status per dependency: `{"status": "ok"|"unavailable", "checks": {"database": "ok"|"down",
  "redis": "ok"|"down"|"not configured"}}`.
- `GET /healthz`: 200 `{"status": "ok"}` when the database answers, else 503
  `{"status": "unavailable", "checks": {"database": "down"}}`.

They are answered by `axiomatic.ops.middleware.ProbeMiddleware` before sessions, authentication,
the host check and the HTTPS redirect (an orchestrator probes the pod's address over plain HTTP),
outside any transaction (one `SELECT 1`), with short timeouts: the database's connect timeout
(`DB_CONNECT_TIMEOUT_SECONDS`) and `PROBE_REDIS_TIMEOUT_SECONDS` for Redis. The same views are
routed in axiomatic/urls.py too.
"""

from __future__ import annotations

import contextlib
import logging
import threading

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.db import connection, transaction
from django.http import JsonResponse
from django.views.decorators.http import require_safe

logger = logging.getLogger("axiomatic.health")

OK, DOWN, NOT_CONFIGURED = "ok", "down", "not configured"

_redis_clients: dict[str, object] = {}
_redis_lock = threading.Lock()


def check_database() -> str:
    """`ok` when `SELECT 1` answers on this thread's connection; `down` otherwise."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        logger.warning("Readiness: the database does not answer (%s)", type(exc).__name__)
        if not connection.in_atomic_block:
            # Drop the broken connection now; the next use opens a fresh one.
            with contextlib.suppress(Exception):
                connection.close()
        return DOWN
    return OK


def _redis_probe_client(url: str):
    """A client of its own (short timeouts, no retries) so a dead Redis answers within the timeout."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    timeout = float(getattr(settings, "PROBE_REDIS_TIMEOUT_SECONDS", 1.0))
    with _redis_lock:
        client = _redis_clients.get(url)
        if client is None:
            client = redis.Redis.from_url(
                url, socket_connect_timeout=timeout, socket_timeout=timeout, retry=Retry(NoBackoff(), 0)
            )
            _redis_clients[url] = client
    return client


def check_redis() -> str:
    """`ok` when the cache's Redis answers PING; `down`; `not configured` without a Redis cache."""
    backend = caches["default"]
    if not isinstance(backend, RedisCache):
        return NOT_CONFIGURED
    try:
        _redis_probe_client(backend._servers[0]).ping()
    except Exception as exc:
        logger.warning("Readiness: Redis does not answer (%s)", type(exc).__name__)
        return DOWN
    return OK


def _no_store(response: JsonResponse) -> JsonResponse:
    response["Cache-Control"] = "no-store"
    return response


@transaction.non_atomic_requests
@require_safe
def livez(request):
    return _no_store(JsonResponse({"status": "ok"}))


@transaction.non_atomic_requests
@require_safe
def readyz(request):
    checks = {"database": check_database(), "redis": check_redis()}
    ready = all(value in (OK, NOT_CONFIGURED) for value in checks.values())
    return _no_store(
        JsonResponse({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)
    )


@transaction.non_atomic_requests
@require_safe
def healthz(request):
    if check_database() == OK:
        return _no_store(JsonResponse({"status": "ok"}))
    return _no_store(JsonResponse({"status": "unavailable", "checks": {"database": DOWN}}, status=503))


PROBES = {"/livez": livez, "/readyz": readyz, "/healthz": healthz}
