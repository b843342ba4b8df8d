"""The one place that asks which database the app runs on.

Production and the test suite run on PostgreSQL; the two-command demo (`./bin/demo`) runs on
SQLite so that it needs nothing but Python (docs/architecture.md, "The demo database", has the
measurement behind that choice). The features that only PostgreSQL gives (row-level security,
maintained counters, the change feed's commit-time numbering, row locks, COPY, bulk INSERT ...
SELECT) ask `is_postgres()` here, never `connection.vendor`, so each such branch is findable in
one grep and the SQLite side can be dropped in one change should the demo move to PostgreSQL.
"""

from __future__ import annotations

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper


def is_postgres(connection: BaseDatabaseWrapper | str | None = None) -> bool:
    """Whether `connection` (a connection, an alias, or the default database) is PostgreSQL."""
    if connection is None or isinstance(connection, str):
        connection = connections[connection or DEFAULT_DB_ALIAS]
    return connection.vendor == "postgresql"
