"""The commit-time numbering, reworked: a transaction's rows are found from its first row's id
upwards through the primary key (rows inserted after it by others are committed and numbered, or
invisible), not through a partial index on `seq IS NULL`, whose entries for rows numbered or
rolled back since the last VACUUM a busy table would scan at every commit. The index goes. The
function runs with sequential and bitmap scans off, so the range is always walked through the
primary key (fresh ids lie past the statistics' histogram, and a generic plan of `id >= $1`
would otherwise read the whole table).
"""

from django.db import migrations

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
    -- Deferred firings come in insertion order: NEW is the first row not numbered yet, and every
    -- row of this transaction still to number has an id from NEW.id on. The transaction's own rows
    -- and the entities' counters, past row-level security for these statements only, then back.
    bypass := current_setting('app.rls_bypass', true);
    PERFORM set_config('app.rls_bypass', 'on', true);
    WITH pending AS (
        SELECT id, entity_id, row_number() OVER (PARTITION BY entity_id ORDER BY id) AS n
          FROM axiomatic_change WHERE id >= NEW.id AND seq IS NULL
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
END $$
-- The transaction's rows are a range of the primary key from NEW.id: walk it through the index,
-- whatever the statistics say (a sequential or bitmap scan would read, and not prune, the whole
-- table at every commit).
SET enable_seqscan = off SET enable_bitmapscan = off;
"""


def install(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD)


class Migration(migrations.Migration):
    dependencies = [("axiomatic", "0006_change_feed_numbering")]

    operations = [
        migrations.RunPython(install, migrations.RunPython.noop),
        migrations.RemoveIndex(model_name="change", name="change_unnumbered_idx"),
    ]
