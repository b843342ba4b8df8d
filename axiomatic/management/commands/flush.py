"""`flush` as the database user it connects as (the tables' owner), not as DB_APP_ROLE.

Flushing TRUNCATEs every table, which ignores row-level security; the application role is
therefore not granted TRUNCATE, and this command (used by operators resetting a database and by
the test suite between transactional tests) runs as the owner, like `migrate`.
"""

from __future__ import annotations

from django.core.management.commands.flush import Command as DjangoFlushCommand
from django.db import DEFAULT_DB_ALIAS

from axiomatic.rls import flush_session


class Command(DjangoFlushCommand):
    def execute(self, *args, **options):
        with flush_session(options.get("database") or DEFAULT_DB_ALIAS):
            return super().execute(*args, **options)
