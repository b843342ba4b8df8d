"""Exact totals in O(1): counters maintained by PostgreSQL triggers, read by the lists.

An app declares, per table, which counters a row contributes to (SQL expressions over the row,
e.g. `'company'` and `'company.role.' || role`); `counting_triggers_sql` turns that into
statement-level triggers with transition tables, so one INSERT, UPDATE, DELETE or COPY of any
number of rows costs one aggregated upsert into `axiomatic_entitycounter`, in the same
transaction. Reads are one indexed lookup (`counter_value`) or a scalar subquery folded into the
page query (`counter_subquery`). On SQLite (the zero-setup demo) there are no triggers and callers
count rows instead.
"""

from __future__ import annotations

from django.db import connection as default_connection
from django.db import migrations
from django.db.models import BigIntegerField, Subquery, Value
from django.db.models.functions import Coalesce

from axiomatic.db import is_postgres
from axiomatic.models import EntityCounter

COUNTER_TABLE = EntityCounter._meta.db_table


def counters_supported(connection=default_connection) -> bool:
    """Counters are maintained only on PostgreSQL."""
    return is_postgres(connection)


def counter_value(entity_id, name: str) -> int:
    """The counter's value (0 when no row was ever counted)."""
    value = EntityCounter.objects.filter(entity_id=entity_id, name=name).values_list("value", flat=True).first()
    return int(value or 0)


def counter_subquery(entity_id, name: str) -> Coalesce:
    """The counter as an expression to annotate onto another query (saves a round trip)."""
    counter = EntityCounter.objects.filter(entity_id=entity_id, name=name).values("value")[:1]
    return Coalesce(Subquery(counter, output_field=BigIntegerField()), Value(0), output_field=BigIntegerField())


def _keys_values(keys: list[str]) -> str:
    return ", ".join(f"({key})" for key in keys)


def counting_triggers_sql(table: str, keys: list[str]) -> tuple[str, str]:
    """(forward SQL, reverse SQL) installing the counting triggers of `table`.

    `keys` are SQL text expressions over a row naming the counters it adds one to (an expression
    that is NULL for a row counts nowhere, e.g. `CASE WHEN type = 'task' THEN 'activity.task' END`).
    Existing rows are counted once when installed. Counter rows are upserted in key order, so two
    transactions always lock them in the same order and cannot deadlock.
    """
    prefix = f"count_{table}"
    upsert = (
        f"INSERT INTO {COUNTER_TABLE} (entity_id, name, value) "
        "SELECT entity_id, key, SUM(delta) FROM ({rows}) AS changed GROUP BY entity_id, key HAVING SUM(delta) <> 0 "
        "ORDER BY entity_id, key "
        f"ON CONFLICT (entity_id, name) DO UPDATE SET value = {COUNTER_TABLE}.value + EXCLUDED.value"
    )

    def rows(source: str, sign: int) -> str:
        return (
            f"SELECT r.entity_id, k.key, {sign} AS delta FROM {source} AS r "
            f"CROSS JOIN LATERAL (VALUES {_keys_values(keys)}) AS k(key) WHERE k.key IS NOT NULL"
        )

    forward = f"""
CREATE OR REPLACE FUNCTION {prefix}_ins() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN {upsert.format(rows=rows("new_rows", 1))}; RETURN NULL; END $$;
CREATE OR REPLACE FUNCTION {prefix}_del() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN {upsert.format(rows=rows("old_rows", -1))}; RETURN NULL; END $$;
CREATE OR REPLACE FUNCTION {prefix}_upd() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN {upsert.format(rows=rows("new_rows", 1) + " UNION ALL " + rows("old_rows", -1))}; RETURN NULL; END $$;
CREATE TRIGGER {prefix}_ins AFTER INSERT ON {table} REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {prefix}_ins();
CREATE TRIGGER {prefix}_del AFTER DELETE ON {table} REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {prefix}_del();
CREATE TRIGGER {prefix}_upd AFTER UPDATE ON {table} REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {prefix}_upd();
{upsert.format(rows=rows(table, 1))};
"""
    reverse = f"""
DROP TRIGGER IF EXISTS {prefix}_ins ON {table};
DROP TRIGGER IF EXISTS {prefix}_del ON {table};
DROP TRIGGER IF EXISTS {prefix}_upd ON {table};
DROP FUNCTION IF EXISTS {prefix}_ins(), {prefix}_del(), {prefix}_upd();
DELETE FROM {COUNTER_TABLE} WHERE name IN (SELECT DISTINCT key FROM {table} AS r
    CROSS JOIN LATERAL (VALUES {_keys_values(keys)}) AS k(key));
"""
    return forward, reverse


def replace_counting_keys(table: str, old: list[str], new: list[str]) -> migrations.RunPython:
    """A migration operation that re-installs `table`'s counting triggers with the keys `new`
    instead of `old` (recounting every row once), and back again when reversed. PostgreSQL only."""

    def swap(keys_from: list[str], keys_to: list[str]):
        def run(apps, schema_editor) -> None:
            if not counters_supported(schema_editor.connection):
                return
            with schema_editor.connection.cursor() as cursor:
                cursor.execute(counting_triggers_sql(table, keys_from)[1])
                cursor.execute(counting_triggers_sql(table, keys_to)[0])

        return run

    return migrations.RunPython(swap(old, new), swap(new, old), elidable=False)
