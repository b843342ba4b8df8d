"""Custom fields (CONTRACT §13): definitions, a `custom_fields` JSON column on companies, contacts
and leads, and on PostgreSQL the three things the database does for them:

- a GIN `jsonb_path_ops` index per table, which answers the `cf.<key>=` equality filters
  (`custom_fields @> '{"<storage key>": <value>}'`);
- `jsonb_contains(jsonb, jsonb)` (the `@>` operator) declared LEAKPROOF: under row-level security
  PostgreSQL uses an index condition only if its functions are leakproof, so without it the GIN
  index is silently unused (see 0009 for the same reason with trigram search). Containment cannot
  raise an error that depends on a row's data. Only a superuser may declare it; elsewhere the
  migration logs it and docs/operations.md gives the statement for an operator to run once;
- `crm_custom_field_unique_index(field_id)`, a SECURITY DEFINER function (owned by the tables'
  owner) that creates the partial unique index of a `unique: true` field, or drops the index of a
  field that no longer exists. The application's role owns no table and so cannot create indexes
  itself; the function only ever does what the definitions say, so any role may call it.
"""

import logging

import django.db.models.deletion
import uuid
from django.db import migrations, models

logger = logging.getLogger("axiomatic.migrations")

LEAKPROOF = ["jsonb_contains(jsonb, jsonb)"]
GIN_INDEXES = {
    "crm_company_custom_fields_gin": "crm_company",
    "crm_contact_custom_fields_gin": "crm_contact",
    "crm_lead_custom_fields_gin": "crm_lead",
}
UNIQUE_INDEX_FUNCTION = r"""
CREATE OR REPLACE FUNCTION crm_custom_field_unique_index(field_id uuid) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $fn$
DECLARE
    compact text := replace(field_id::text, '-', '');
    index_name text := 'cf_uniq_' || compact;
    storage_key text := 'f' || compact;
    previous text := current_setting('app.rls_bypass', true);
    field_type text;
    field_unique boolean;
    table_name text;
BEGIN
    -- Row-level security would hide another entity's definition (and the drop below would then
    -- remove an index still in use): look the definition up past it.
    PERFORM set_config('app.rls_bypass', 'on', true);
    SELECT object_type, "unique" INTO field_type, field_unique FROM crm_customfield WHERE id = field_id;
    PERFORM set_config('app.rls_bypass', coalesce(previous, ''), true);
    IF field_type IS NULL THEN
        EXECUTE format('DROP INDEX IF EXISTS %I', index_name);
        RETURN;
    END IF;
    IF NOT field_unique THEN
        RETURN;
    END IF;
    table_name := CASE field_type
        WHEN 'company' THEN 'crm_company' WHEN 'contact' THEN 'crm_contact' WHEN 'lead' THEN 'crm_lead' END;
    IF table_name IS NULL THEN
        RAISE EXCEPTION 'custom field % has an unknown object type %', field_id, field_type;
    END IF;
    EXECUTE format(
        'CREATE UNIQUE INDEX IF NOT EXISTS %I ON %I (md5(custom_fields ->> %L)) WHERE custom_fields ? %L',
        index_name, table_name, storage_key, storage_key
    );
END
$fn$
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        for name, table in GIN_INDEXES.items():
            cursor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {table} USING gin (custom_fields jsonb_path_ops)")
        cursor.execute(UNIQUE_INDEX_FUNCTION)
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        (superuser,) = cursor.fetchone()
        if superuser:
            for function in LEAKPROOF:
                cursor.execute(f"ALTER FUNCTION {function} LEAKPROOF")
        else:
            logger.warning(
                "Not a superuser: cf.<key>= filters under row-level security scan instead of using the GIN "
                "indexes until a superuser runs ALTER FUNCTION ... LEAKPROOF for %s (docs/operations.md).",
                ", ".join(LEAKPROOF),
            )


def reverse(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE indexname LIKE 'cf\\_uniq\\_%%'")
        for (name,) in cursor.fetchall():
            cursor.execute(f'DROP INDEX IF EXISTS "{name}"')
        cursor.execute("DROP FUNCTION IF EXISTS crm_custom_field_unique_index(uuid)")
        for name in GIN_INDEXES:
            cursor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [
        ("axiomatic", "0007_change_feed_numbering_by_id"),
        ("crm", "0016_inbound_mail_sync"),
    ]

    operations = [
        migrations.AddField(
            model_name="company",
            name="custom_fields",
            field=models.JSONField(
                blank=True, db_default=models.Value({}, output_field=models.JSONField()), default=dict
            ),
        ),
        migrations.AddField(
            model_name="contact",
            name="custom_fields",
            field=models.JSONField(
                blank=True, db_default=models.Value({}, output_field=models.JSONField()), default=dict
            ),
        ),
        migrations.AddField(
            model_name="lead",
            name="custom_fields",
            field=models.JSONField(
                blank=True, db_default=models.Value({}, output_field=models.JSONField()), default=dict
            ),
        ),
        migrations.CreateModel(
            name="CustomField",
            fields=[
                ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "object_type",
                    models.CharField(
                        choices=[("company", "Company"), ("contact", "Contact"), ("lead", "Lead")], max_length=10
                    ),
                ),
                ("key", models.CharField(max_length=40)),
                ("label", models.CharField(max_length=200)),
                (
                    "type",
                    models.CharField(
                        choices=[
                            ("text", "Text"),
                            ("number", "Number"),
                            ("date", "Date"),
                            ("datetime", "Date and time"),
                            ("boolean", "Yes/no"),
                            ("select", "Select"),
                            ("multiselect", "Multi-select"),
                            ("url", "URL"),
                            ("email", "Email"),
                            ("user", "User"),
                            ("currency", "Currency amount"),
                        ],
                        max_length=12,
                    ),
                ),
                ("options", models.JSONField(blank=True, default=list)),
                ("required", models.BooleanField(default=False)),
                ("unique", models.BooleanField(default=False)),
                ("description", models.TextField(blank=True)),
                ("sort_order", models.PositiveIntegerField(default=0)),
                (
                    "entity",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="+", to="axiomatic.entity"
                    ),
                ),
            ],
            options={
                "ordering": ["object_type", "sort_order", "id"],
                "indexes": [
                    models.Index(
                        fields=["entity", "object_type", "sort_order", "id"], name="customfield_entity_order_idx"
                    )
                ],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("entity", "object_type", "key"), name="customfield_entity_type_key_uniq"
                    )
                ],
            },
        ),
        migrations.RunPython(forward, reverse, elidable=False),
    ]
