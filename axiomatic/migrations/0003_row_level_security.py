"""Row-level security on every table with an `entity_id` column (PostgreSQL; SQLite skips it).

Creates DB_APP_ROLE when the migrating user may (superuser or CREATEROLE; otherwise it must exist,
see README), grants it the tables, and enables + forces RLS with the `entity_isolation` policy on
each tenant table that exists now. Tables of later migrations, in any app, get the same from the
post_migrate step of every `migrate` (`axiomatic.rls.on_post_migrate`).
"""

from django.db import migrations

from axiomatic import rls


def install(apps, schema_editor):
    rls.rls_install(schema_editor.connection, apps.get_models())


def uninstall(apps, schema_editor):
    rls.rls_uninstall(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("axiomatic", "0002_currency_code_validators")]

    operations = [migrations.RunPython(install, uninstall, elidable=False)]
