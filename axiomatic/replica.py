"""Reads on a PostgreSQL streaming replica, writes and fresh reads on the primary.

With `DATABASE_REPLICA_URL` set (settings: the `replica` alias), the read paths that carry most
of the traffic — API lists and details (`EntityScopedViewSet`'s `list`/`retrieve` actions, the
dashboard's included) and the dashboard and board pages — run on the replica. Everything else
(every write, every other read, Celery, the admin, commands) stays on the primary.

How a request is routed, and why this shape:

- The decision is explicit and made once per request, at the read path: `replica_reads(request,
  entity_id=...)` wraps the API view's dispatch (before authentication, so the key lookup reads
  there too and a list read costs the primary no query) and the pages' views (after the page's
  membership check). Inside it a context variable (`axiomatic.db.read_alias`) makes
  `ReplicaRouter.db_for_read` answer `replica`; outside it every read goes to the primary, also
  for rows that were loaded from the replica. `db_for_write` always answers the primary.
  A router with a global "reads go to the replica" rule would also send the reads of write
  requests there — the reads inside a write's transaction (uniqueness checks, `for_entity` lookups
  before an update) would then see a snapshot older than the transaction's own writes; deciding
  per request keeps a write request entirely on the primary.
- Only GET/HEAD requests that name a well-formed entity are routed. The replica's work runs in a
  transaction of its own (the primary's ATOMIC_REQUESTS transaction stays empty: no round trip),
  whose first statement both sets the entity for row-level security (`app.entity_id`, the same
  transaction-local setting as on the primary) and measures the replica's lag. The application
  role (`SET ROLE`, `axiomatic.rls.on_connection_created`) is entered on every new connection,
  the replica's too, so the replica enforces the same policies as the primary. `bypass_rls`,
  `entity_scope` and `enter_entity` act on the connection the code reads from.
- A replica that is down (cannot connect, connection lost), is not in recovery (promoted or
  misconfigured), or lags more than `REPLICA_MAX_LAG_SECONDS` is skipped: the request reads the
  primary, and this process does not try the replica again for `REPLICA_RETRY_SECONDS` (the
  verdict is kept in memory: no round trip for it). The lag check costs nothing extra: it is part
  of the statement that sets the entity. Lag is 0 while the replica has replayed all it received,
  else the age of the last replayed transaction (a replica paused or falling behind shows it).
- Read-your-writes: after a write request (any unsafe method answered below 400, or a request
  whose statements on the primary wrote: a GET callback that saves) by a caller,
  `ReplicaPinMiddleware` pins that caller — the API key (keyed by a digest of its Authorization
  header) or the signed-in user — to the primary for `REPLICA_PIN_SECONDS`, at least the lag the
  replica may have. The pin lives in the cache (Redis), so every web process sees it; it is set
  after the write committed and before the response leaves. Security changes pin the whole entity
  the same way (`replica_pin_entity`): a revoked key or removed member is refused on the very next
  request, because that request reads the primary until any replica still in use has replayed it.
  A cache that cannot answer counts as pinned (the primary is always correct).

Limits: another caller's write reaches this caller's reads after the replica's lag (at most
`REPLICA_MAX_LAG_SECONDS` while the replica is used). Lag is measured with the replica's clock
against commit times from the primary's: keep both on NTP. A replica cut off from its primary
without noticing counts its last received WAL as current until `wal_receiver_timeout` (set it low).
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from functools import wraps

from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.core.cache import cache
from django.core.exceptions import MiddlewareNotUsed
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, transaction

from axiomatic.db import read_alias, reads_from
from axiomatic.ops.database import is_database_unavailable
from axiomatic.rls import ENTITY_SETTING
from axiomatic.tenancy.database import mark_entered
from axiomatic.tenancy.resolve import named_entity_id_or_none

logger = logging.getLogger("axiomatic.replica")

REPLICA_ALIAS = "replica"
SAFE_METHODS = frozenset({"GET", "HEAD"})  # the requests that may read the replica
_READ_ONLY_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})  # no pin unless they wrote
_PIN_PREFIX = "replica-pin"
_WRITE_VERBS = ("INSERT", "UPDATE", "DELETE", "MERGE", "COPY")

# One statement, the replica's first in the request's transaction: is it a standby, how far
# behind is it, and the entity for row-level security (transaction-local, as on the primary).
CHECK_SQL = (
    "SELECT pg_is_in_recovery(), "
    "CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0.0 "
    "ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8, 'Infinity') END, "
    "set_config(%s, %s, true)"
)


def replica_configured() -> bool:
    """Whether a replica is configured (`DATABASE_REPLICA_URL`)."""
    return REPLICA_ALIAS in settings.DATABASES


class ReplicaRouter:
    """Reads go where the current read path decided (`axiomatic.db.read_alias`: the primary unless
    `replica_reads` routed the request), writes always to the primary, migrations never run on the
    replica (it replays the primary's)."""

    def db_for_read(self, model, **hints) -> str:
        return read_alias()

    def db_for_write(self, model, **hints) -> str:
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1, obj2, **hints) -> bool:
        return True  # the replica holds the primary's rows: an object read there is the same row

    def allow_migrate(self, db, app_label, model_name=None, **hints) -> bool | None:
        return False if db == REPLICA_ALIAS else None


# --- the verdict: skip a replica that is down or lagging, for a while --------------------------

_lock = threading.Lock()
_skip_until = 0.0
_skip_reason = ""


def replica_skipped() -> str:
    """Why this process skips the replica now ("" when it does not)."""
    if _skip_until and time.monotonic() < _skip_until:
        return _skip_reason
    return ""


def _skip(reason: str) -> None:
    global _skip_until, _skip_reason
    with _lock:
        if not replica_skipped():
            logger.warning("Reading from the primary for %ss: the replica %s", settings.REPLICA_RETRY_SECONDS, reason)
        _skip_until = time.monotonic() + float(settings.REPLICA_RETRY_SECONDS)
        _skip_reason = reason


def replica_verdict_reset() -> None:
    """Forget a skip verdict (tests; an operator's shell after fixing the replica)."""
    global _skip_until, _skip_reason
    with _lock:
        _skip_until, _skip_reason = 0.0, ""


# --- pins: read-your-writes ------------------------------------------------------------------


def pin_seconds() -> int:
    """How long a pin lasts: REPLICA_PIN_SECONDS, and never less than the lag a replica in use may
    have, so that once it expires the replica has replayed the write that set it."""
    return max(1, math.ceil(max(float(settings.REPLICA_PIN_SECONDS), float(settings.REPLICA_MAX_LAG_SECONDS) + 1)))


def request_credential(request) -> str | None:
    """Who the request acts as, known before authentication: the API key (a digest of the
    Authorization header: no secret in the cache) or the session's user id."""
    http_request = getattr(request, "_request", request)
    header = http_request.META.get("HTTP_AUTHORIZATION")
    if header:
        raw = header.encode("latin-1", "replace") if isinstance(header, str) else header
        token = raw.split()[-1] if raw.split() else raw  # "Bearer" in any case: the same key
        return "key:" + hashlib.sha256(token).hexdigest()[:32]
    session = getattr(http_request, "session", None)
    user_id = session.get(SESSION_KEY) if session is not None else None
    return f"user:{user_id}" if user_id else None


def _pin_key(kind_and_id: str) -> str:
    return f"{_PIN_PREFIX}:{kind_and_id}"


def replica_pin(*, credential: str | None = None, entity_id=None) -> None:
    """Send the reads of this caller (or of this whole entity) to the primary for `pin_seconds()`."""
    keys = []
    if credential:
        keys.append(_pin_key(credential))
    if entity_id:
        keys.append(_pin_key(f"entity:{entity_id}"))
    if not keys:
        return
    try:
        cache.set_many(dict.fromkeys(keys, 1), timeout=pin_seconds())
    except Exception:
        # The reads then consult the same cache, fail too, and go to the primary.
        logger.warning("Could not pin %s to the primary", ", ".join(keys), exc_info=True)


def replica_pin_entity(entity_id) -> None:
    """After a security change in the entity (key revoked, member removed): its reads go to the
    primary until the replica has replayed it. Set once the change commits (or now, outside a
    transaction). Nothing without a replica."""
    if replica_configured() and entity_id:
        transaction.on_commit(lambda: replica_pin(entity_id=entity_id))


def replica_pinned(*, credential: str | None, entity_id) -> bool:
    """Whether the caller or the entity is pinned to the primary (one cache round trip)."""
    keys = [_pin_key(f"entity:{entity_id}")]
    if credential:
        keys.append(_pin_key(credential))
    try:
        return bool(cache.get_many(keys))
    except Exception:
        logger.warning("Replica pins unreadable; reading from the primary", exc_info=True)
        return True


# --- the read path ---------------------------------------------------------------------------


def _enter(stack: ExitStack, entity_id) -> bool:
    """Open the replica's transaction and check it in one statement; False (and the skip verdict)
    when it cannot serve this request."""
    connection = connections[REPLICA_ALIAS]
    atomic = transaction.atomic(using=REPLICA_ALIAS)
    try:
        atomic.__enter__()
    except DatabaseError as exc:
        _skip(f"is unreachable ({type(exc).__name__})")
        return False
    try:
        with connection.cursor() as cursor:
            cursor.execute(CHECK_SQL, [ENTITY_SETTING, str(entity_id)])
            in_recovery, lag, _ = cursor.fetchone()
    except DatabaseError as exc:
        try:
            atomic.__exit__(type(exc), exc, exc.__traceback__)
        except DatabaseError:
            connection.close()
        _skip(f"failed its check ({type(exc).__name__})")
        return False
    if not in_recovery or lag > float(settings.REPLICA_MAX_LAG_SECONDS):
        atomic.__exit__(None, None, None)
        _skip("is not in recovery (not a standby)" if not in_recovery else f"lags {lag:.1f}s")
        return False
    stack.push(atomic.__exit__)
    return True


@contextmanager
def replica_reads(request, *, entity_id) -> Iterator[bool]:
    """The block's reads run on the replica when it may serve this request (yields True), else on
    the primary (False): a GET/HEAD request naming an entity, a replica configured, up and not
    lagging, and neither the caller nor the entity pinned to the primary."""
    http_request = getattr(request, "_request", request)
    if (
        entity_id is None
        or http_request.method not in SAFE_METHODS
        or not replica_configured()
        or read_alias() != DEFAULT_DB_ALIAS
        or replica_skipped()
        or replica_pinned(credential=request_credential(http_request), entity_id=entity_id)
    ):
        yield False
        return
    with ExitStack() as stack:
        if not _enter(stack, entity_id):
            stack.close()
            yield False
            return
        with reads_from(REPLICA_ALIAS):
            try:
                mark_entered(http_request, entity_id)  # the check statement set it on the replica
                yield True
            except DatabaseError as exc:
                if is_database_unavailable(exc):
                    _skip(f"failed during a read ({type(exc).__name__})")
                raise


@contextmanager
def replica_reads_for_api(request) -> Iterator[bool]:
    """`replica_reads` for an API request, before authentication: the entity the request names in
    its query string or `x-entity-id` (a GET has no body)."""
    entity_id = named_entity_id_or_none(query=request.GET, meta=request.META)
    with replica_reads(request, entity_id=entity_id) as routed:
        yield routed


def reads_from_replica(view: Callable) -> Callable:
    """Decorator for a page view under `entity_page`: its reads run on the replica when it may."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        with replica_reads(request, entity_id=request.entity.pk):
            return view(request, *args, **kwargs)

    return wrapper


class _WriteSeen:
    """An execute wrapper on the primary's connection: did this request write?"""

    def __init__(self):
        self.wrote = False

    def __call__(self, execute, sql, params, many, context):
        if not self.wrote and sql.lstrip()[:6].upper().startswith(_WRITE_VERBS):
            self.wrote = True
        return execute(sql, params, many, context)


class ReplicaPinMiddleware:
    """Read-your-writes: after a request that wrote (an unsafe method answered below 400, or any
    request whose statements on the primary wrote, such as a GET callback), the caller's reads go
    to the primary for `pin_seconds()`. Runs outside the view's transaction, so the pin is set
    after the commit and before the response leaves. Not installed without a replica."""

    def __init__(self, get_response):
        if not replica_configured():
            raise MiddlewareNotUsed
        self.get_response = get_response

    def __call__(self, request):
        seen = _WriteSeen()
        with connections[DEFAULT_DB_ALIAS].execute_wrapper(seen):
            response = self.get_response(request)
        if seen.wrote or (request.method not in _READ_ONLY_METHODS and response.status_code < 400):
            credential = request_credential(request)
            if credential is not None:
                replica_pin(credential=credential)
        return response
