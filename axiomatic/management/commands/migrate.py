"""`migrate` as the database user it connects as (the tables' owner), not as DB_APP_ROLE.

Every other connection of the application `SET ROLE`s to DB_APP_ROLE, which owns no table and
cannot change one. Migrations need the owner, and data migrations read every entity's rows, so
this command resets the role and turns the named bypass on for its run; its post_migrate step
(re)applies the app role's grants and the row-level-security policies (`axiomatic.rls`).
"""

from __future__ import annotations

from django.core.management.commands.migrate import Command as DjangoMigrateCommand
from django.db import DEFAULT_DB_ALIAS

from axiomatic.rls import owner_session


class Command(DjangoMigrateCommand):
    def execute(self, *args, **options):
        # Around the system checks too: they may open the connection before handle() runs.
        with owner_session(options.get("database") or DEFAULT_DB_ALIAS):
            return super().execute(*args, **options)
