"""Count open tasks per entity too (`activity.task.open`), for the dashboard (PostgreSQL only)."""

from django.db import migrations

from axiomatic.counters import replace_counting_keys

OLD_KEYS = ["'activity'", "CASE WHEN type = 'task' THEN 'activity.task' END"]
NEW_KEYS = [*OLD_KEYS, "CASE WHEN type = 'task' AND status = 'open' THEN 'activity.task.open' END"]


class Migration(migrations.Migration):
    dependencies = [("crm", "0009_search_indexes_under_row_level_security")]

    operations = [replace_counting_keys("crm_activity", OLD_KEYS, NEW_KEYS)]
