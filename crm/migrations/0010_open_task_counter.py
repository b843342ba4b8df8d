"""Count open tasks per entity too (`activity.task.open`), for the dashboard (PostgreSQL only)."""

from django.db import migrations

from axiomatic.counters import counting_triggers_sql

OLD_KEYS = ["'activity'", "CASE WHEN type = 'task' THEN 'activity.task' END"]
NEW_KEYS = [*OLD_KEYS, "CASE WHEN type = 'task' AND status = 'open' THEN 'activity.task.open' END"]


def _swap(schema_editor, old: list[str], new: list[str]) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(counting_triggers_sql("crm_activity", old)[1])
        cursor.execute(counting_triggers_sql("crm_activity", new)[0])


class Migration(migrations.Migration):
    dependencies = [("crm", "0009_search_indexes_under_row_level_security")]

    operations = [
        migrations.RunPython(
            lambda apps, editor: _swap(editor, OLD_KEYS, NEW_KEYS),
            lambda apps, editor: _swap(editor, NEW_KEYS, OLD_KEYS),
            elidable=False,
        )
    ]
