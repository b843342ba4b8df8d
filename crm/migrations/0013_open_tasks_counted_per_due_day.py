"""Count open tasks per UTC day they are due (`activity.task.open.due:YYYY-MM-DD`), so the
dashboard's overdue figure sums a few day counters instead of counting every overdue task
(PostgreSQL only)."""

from django.db import migrations

from axiomatic.counters import replace_counting_keys

OLD_KEYS = [
    "'activity'",
    "CASE WHEN type = 'task' THEN 'activity.task' END",
    "CASE WHEN type = 'task' AND status = 'open' THEN 'activity.task.open' END",
]
NEW_KEYS = [
    *OLD_KEYS,
    "CASE WHEN type = 'task' AND status = 'open' AND due_at IS NOT NULL "
    "THEN 'activity.task.open.due:' || to_char(due_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') END",
]


class Migration(migrations.Migration):
    dependencies = [("crm", "0012_admin_order_indexes_carry_the_entity")]

    operations = [replace_counting_keys("crm_activity", OLD_KEYS, NEW_KEYS)]
