"""The one way the database learns a request's or a job's entity (row-level security).

PostgreSQL's policies (`axiomatic.rls`) show a row only in the entity the transaction names in
`app.entity_id`. Code tells the database its entity here, in one of two shapes:

- `enter_entity(entity_id, request=...)`: the rest of the current transaction acts in the entity
  (a request, which runs in one transaction: the API, the pages). Once per request: a second call
  for the same entity costs no query.
- `entity_scope(entity_id)`: the block acts in the entity, then back to before (work that spans
  several transactions or none: a Celery task, the mailbox callback that talks to the provider
  between queries, the key's last-use stamp after the request).

`entities_scope(ids)` is the staff admin's variant (several entities at once). SQLite (the demo
database) has no such setting: everything here is then a no-op.
"""

from __future__ import annotations

from axiomatic.db import is_postgres, read_connection
from axiomatic.rls import ENTITY_SETTING, entities_scope, entity_scope

__all__ = ["enter_entity", "entities_scope", "entity_scope"]

_REQUEST_MARK = "_rls_entity_id"


def enter_entity(entity_id, *, request=None) -> bool:
    """Make `entity_id` the entity of the rest of the current transaction.

    `set_config(..., true)` is transaction-local, so it cannot leak into another request that
    reuses the connection. With `request` (a Django or DRF request), a request that already
    entered this entity (the API key's authentication, then the entity check) asks no second
    query. False when nothing was set: not in a transaction (use `entity_scope`), or not
    PostgreSQL. On a read path routed to the streaming replica (`axiomatic.replica`), the replica's
    transaction is the one that learns the entity.
    """
    http_request = getattr(request, "_request", request)
    connection = read_connection()
    value = (connection.alias, str(entity_id))
    if http_request is not None and getattr(http_request, _REQUEST_MARK, None) == value:
        return True
    if not is_postgres(connection) or not connection.in_atomic_block:
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config(%s, %s, true)", [ENTITY_SETTING, value[1]])
    if http_request is not None:
        setattr(http_request, _REQUEST_MARK, value)
    return True


def mark_entered(request, entity_id) -> None:
    """Record that the request's transaction already acts in `entity_id` (set by a combined
    statement, such as the end of the entity switcher's bypass), so `enter_entity` skips it."""
    setattr(getattr(request, "_request", request), _REQUEST_MARK, (read_connection().alias, str(entity_id)))
