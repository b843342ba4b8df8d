"""The change feed: `axiomatic_change`, and the commit-time numbering of its rows (PostgreSQL).

Why a deferred constraint trigger: `seq` must increase in the order changes become visible. A
transaction takes its entity's `changes.seq` counter row (in `axiomatic_entitycounter`) only at
COMMIT, after its own statements and the foreign-key checks queued before its changes, and holds
it until the commit is visible; so no transaction can wait for it while holding a lock the
committing one needs (no deadlock), and a later number is never visible before an earlier one.
The first firing in a transaction numbers all of its rows (every entity, counters in entity
order) and remembers, in a transaction-local setting, the highest id it numbered; later firings
for rows up to it return at once (bulk writes record thousands of changes in one transaction).
"""

from django.db import migrations, models

FORWARD = """
CREATE OR REPLACE FUNCTION axiomatic_change_number() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    done text := current_setting('axiomatic.changes_numbered_through', true);
    bypass text;
    through bigint;
BEGIN
    -- Rows up to this id were numbered by an earlier firing in this transaction: nothing to do
    -- (the common case; one firing per row must stay cheap for bulk writes).
    IF done IS NOT NULL AND done <> '' AND NEW.id <= done::bigint THEN
        RETURN NULL;
    END IF;
    -- The transaction's own rows and the entities' counters, past row-level security for these
    -- statements only (the entity setting may have been restored before COMMIT), then back.
    bypass := current_setting('app.rls_bypass', true);
    PERFORM set_config('app.rls_bypass', 'on', true);
    WITH pending AS (
        SELECT id, entity_id, row_number() OVER (PARTITION BY entity_id ORDER BY id) AS n
          FROM axiomatic_change WHERE seq IS NULL
    ), totals AS (
        SELECT entity_id, count(*) AS n FROM pending GROUP BY entity_id
    ), counters AS (
        INSERT INTO axiomatic_entitycounter (entity_id, name, value)
        SELECT entity_id, 'changes.seq', n FROM totals ORDER BY entity_id
        ON CONFLICT (entity_id, name) DO UPDATE SET value = axiomatic_entitycounter.value + EXCLUDED.value
        RETURNING entity_id, value
    ), numbered AS (
        UPDATE axiomatic_change AS c
           SET seq = counters.value - totals.n + pending.n
          FROM pending JOIN totals USING (entity_id) JOIN counters USING (entity_id)
         WHERE c.id = pending.id
        RETURNING c.id
    )
    SELECT max(id) INTO through FROM numbered;
    PERFORM set_config('axiomatic.changes_numbered_through', greatest(through, NEW.id)::text, true);
    PERFORM set_config('app.rls_bypass', coalesce(bypass, ''), true);
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS axiomatic_change_number ON axiomatic_change;
CREATE CONSTRAINT TRIGGER axiomatic_change_number AFTER INSERT ON axiomatic_change
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION axiomatic_change_number();
"""

REVERSE = """
DROP TRIGGER IF EXISTS axiomatic_change_number ON axiomatic_change;
DROP FUNCTION IF EXISTS axiomatic_change_number();
"""


def _run(sql):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("axiomatic", "0004_entity_counters"),
    ]

    operations = [
        migrations.CreateModel(
            name="Change",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("event_id", models.CharField(max_length=40)),
                ("seq", models.BigIntegerField(blank=True, null=True)),
                ("type", models.CharField(max_length=64)),
                ("object_type", models.CharField(max_length=40)),
                ("object_id", models.CharField(max_length=64)),
                ("occurred_at", models.DateTimeField()),
                ("actor_type", models.CharField(max_length=10)),
                ("actor_id", models.CharField(blank=True, max_length=64, null=True)),
                ("data", models.TextField()),
                ("previous", models.TextField(blank=True, null=True)),
                (
                    "entity",
                    models.ForeignKey(
                        db_constraint=False,
                        on_delete=models.deletion.DO_NOTHING,
                        related_name="+",
                        to="axiomatic.entity",
                    ),
                ),
            ],
            options={
                "indexes": [
                    models.Index(fields=["occurred_at"], name="change_occurred_idx"),
                    models.Index(
                        condition=models.Q(("seq__isnull", True)), fields=["id"], name="change_unnumbered_idx"
                    ),
                ],
                "constraints": [models.UniqueConstraint(fields=("entity", "seq"), name="change_entity_seq_uniq")],
            },
        ),
        migrations.RunPython(_run(FORWARD), _run(REVERSE)),
    ]
