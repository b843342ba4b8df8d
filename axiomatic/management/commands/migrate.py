"""`migrate` as the database user it connects as (the tables' owner), not as DB_APP_ROLE.

Every other connection of the application `SET ROLE`s to DB_APP_ROLE, which owns no table and
cannot change one. Migrations need the owner, and data migrations read every entity's rows, so
this command resets the role and turns the named bypass on for its run; its post_migrate step
(re)applies the app role's grants and the row-level-security policies (`axiomatic.rls`).
"""

from __future__ import annotations

from django.core.management.commands.migrate import Command as DjangoMigrateCommand

from axiomatic.rls import owner_session


class Command(DjangoMigrateCommand):
    def handle(self, *args, **options):
        with owner_session(options["database"]):
            return super().handle(*args, **options)
