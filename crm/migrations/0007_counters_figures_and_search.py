"""PostgreSQL only (the SQLite demo skips it): maintained totals, pipeline figures, trigram search.

- Counting triggers (see `axiomatic.counters`) keep exact per-entity totals of companies (also by
  role and status), contacts, leads and activities (also tasks), so lists answer `total` in O(1).
- A statement trigger on leads keeps `crm_pipelinefigure` (count, value, weighted value per stage,
  currency and owner) in step with every insert, update and delete, in the same transaction.
- `pg_trgm` GIN indexes, led by the entity id (`btree_gin`), serve every `q` substring search.
"""

from django.db import migrations

from axiomatic.counters import counting_triggers_sql

COUNTED = {
    "crm_company": ["'company'", "'company.role.' || role", "'company.status.' || status"],
    "crm_contact": ["'contact'"],
    "crm_lead": ["'lead'"],
    "crm_activity": ["'activity'", "CASE WHEN type = 'task' THEN 'activity.task' END"],
}

FIGURE_ROWS = """
    SELECT entity_id, stage_id, currency, owner_id, {sign} AS n,
           {sign} * (value IS NOT NULL)::int AS valued,
           {sign} * COALESCE(value, 0) AS amount,
           {sign} * ROUND(COALESCE(value, 0) * probability_pct / 100.0, 2) AS weighted
    FROM {source}
"""
FIGURE_UPSERT = """
    INSERT INTO crm_pipelinefigure
        (entity_id, stage_id, currency, owner_id, lead_count, valued_count, value_sum, weighted_sum)
    SELECT entity_id, stage_id, currency, owner_id, SUM(n), SUM(valued), SUM(amount), SUM(weighted)
    FROM ({rows}) AS changed
    GROUP BY entity_id, stage_id, currency, owner_id
    HAVING SUM(n) <> 0 OR SUM(valued) <> 0 OR SUM(amount) <> 0 OR SUM(weighted) <> 0
    ORDER BY entity_id, stage_id, currency, owner_id
    ON CONFLICT (entity_id, stage_id, currency, owner_id) DO UPDATE SET
        lead_count = crm_pipelinefigure.lead_count + EXCLUDED.lead_count,
        valued_count = crm_pipelinefigure.valued_count + EXCLUDED.valued_count,
        value_sum = crm_pipelinefigure.value_sum + EXCLUDED.value_sum,
        weighted_sum = crm_pipelinefigure.weighted_sum + EXCLUDED.weighted_sum;
    DELETE FROM crm_pipelinefigure f USING (SELECT DISTINCT entity_id FROM ({rows}) AS e) AS touched
    WHERE f.entity_id = touched.entity_id AND f.lead_count = 0;
"""


def _figures_sql() -> tuple[str, str]:
    new = FIGURE_ROWS.format(sign=1, source="new_rows")
    old = FIGURE_ROWS.format(sign=-1, source="old_rows")
    body = {
        "ins": FIGURE_UPSERT.format(rows=new),
        "del": FIGURE_UPSERT.format(rows=old),
        "upd": FIGURE_UPSERT.format(rows=f"{new} UNION ALL {old}"),
    }
    forward = "".join(
        f"CREATE OR REPLACE FUNCTION crm_lead_figures_{op}() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN {sql} RETURN NULL; END $$;\n"
        for op, sql in body.items()
    )
    forward += """
CREATE TRIGGER crm_lead_figures_ins AFTER INSERT ON crm_lead REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION crm_lead_figures_ins();
CREATE TRIGGER crm_lead_figures_del AFTER DELETE ON crm_lead REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION crm_lead_figures_del();
CREATE TRIGGER crm_lead_figures_upd AFTER UPDATE ON crm_lead REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION crm_lead_figures_upd();
DELETE FROM crm_pipelinefigure;
""" + FIGURE_UPSERT.format(rows=FIGURE_ROWS.format(sign=1, source="crm_lead"))
    reverse = """
DROP TRIGGER IF EXISTS crm_lead_figures_ins ON crm_lead;
DROP TRIGGER IF EXISTS crm_lead_figures_del ON crm_lead;
DROP TRIGGER IF EXISTS crm_lead_figures_upd ON crm_lead;
DROP FUNCTION IF EXISTS crm_lead_figures_ins(), crm_lead_figures_del(), crm_lead_figures_upd();
DELETE FROM crm_pipelinefigure;
"""
    return forward, reverse


SEARCH_INDEXES = {
    "crm_company_name_trgm": "crm_company USING gin (entity_id, UPPER(name) gin_trgm_ops)",
    "crm_contact_name_trgm": "crm_contact USING gin (entity_id, UPPER(first_name || ' ' || last_name) gin_trgm_ops)",
    "crm_contact_email_trgm": "crm_contact USING gin (entity_id, UPPER(email) gin_trgm_ops)",
    "crm_lead_title_trgm": "crm_lead USING gin (entity_id, UPPER(title) gin_trgm_ops)",
}


def forward(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    statements = [
        "CREATE EXTENSION IF NOT EXISTS pg_trgm",
        "CREATE EXTENSION IF NOT EXISTS btree_gin",
        *(counting_triggers_sql(table, keys)[0] for table, keys in COUNTED.items()),
        _figures_sql()[0],
        *(f"CREATE INDEX IF NOT EXISTS {name} ON {definition}" for name, definition in SEARCH_INDEXES.items()),
    ]
    with schema_editor.connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def reverse(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for name in SEARCH_INDEXES:
            cursor.execute(f"DROP INDEX IF EXISTS {name}")
        cursor.execute(_figures_sql()[1])
        for table, keys in COUNTED.items():
            cursor.execute(counting_triggers_sql(table, keys)[1])


class Migration(migrations.Migration):
    dependencies = [
        ("crm", "0006_list_indexes_and_pipeline_figures"),
        ("axiomatic", "0004_entity_counters"),
    ]

    operations = [migrations.RunPython(forward, reverse, elidable=False)]
