"""The one place that asks which database the app runs on.

Production and the test suite run on PostgreSQL; the two-command demo (`./bin/demo`) runs on
SQLite so that it needs nothing but Python (docs/architecture.md, "The demo database", has the
measurement behind that choice). The features that only PostgreSQL gives (row-level security,
maintained counters, the change feed's commit-time numbering, row locks, COPY, bulk INSERT ...
SELECT) ask `is_postgres()` here, never `connection.vendor`, so each such branch is findable in
one grep and the SQLite side can be dropped in one change should the demo move to PostgreSQL.

It also says where the current code reads: `read_alias()` is the primary ("default") unless a read
path routed the request to the streaming replica (`axiomatic.replica`, `reads_from`); raw SQL on
a read path takes `read_connection()` so that it follows the ORM there.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper

# The alias the current request reads from: the primary unless a read path entered the replica
# (`axiomatic.replica.replica_reads`). A context variable, so threads and tasks never share it.
_read_alias: ContextVar[str] = ContextVar("axiomatic_read_alias", default=DEFAULT_DB_ALIAS)


def is_postgres(connection: BaseDatabaseWrapper | str | None = None) -> bool:
    """Whether `connection` (a connection, an alias, or the default database) is PostgreSQL."""
    if connection is None or isinstance(connection, str):
        connection = connections[connection or DEFAULT_DB_ALIAS]
    return connection.vendor == "postgresql"


def read_alias() -> str:
    """The database alias the current code reads from (the router's choice): "default" unless a
    read path routed the request to the streaming replica (`axiomatic.replica`)."""
    return _read_alias.get()


def read_connection() -> BaseDatabaseWrapper:
    """The connection raw SQL of a read path uses, so that it follows the ORM to the replica."""
    return connections[_read_alias.get()]


@contextmanager
def reads_from(alias: str) -> Iterator[None]:
    """The block's reads go to `alias` (`axiomatic.replica` opens the replica's transaction first)."""
    token = _read_alias.set(alias)
    try:
        yield
    finally:
        _read_alias.reset(token)
