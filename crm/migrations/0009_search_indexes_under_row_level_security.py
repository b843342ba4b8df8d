"""Trigram search that keeps working under row-level security (PostgreSQL only).

Under row-level security PostgreSQL uses a condition in an index scan only if every function in
it is LEAKPROOF (it could otherwise run before the policy and reveal rows through errors). The
`q` searches are `UPPER(column) LIKE '%term%'` (`upper`, `textlike`, and `textcat` for a contact's
full name); none of them can reveal a row's data through an error (errors depend on the pattern
alone), so they are declared LEAKPROOF — which only a superuser may do. Migrations run by a
superuser (development, CI) do it; elsewhere it is logged and docs/operations.md gives the three
statements for an operator to run once. Without them search still works, by scanning.

The trigram indexes become plain ones on the searched expression: the entity filter rechecks the
few matches, which is far cheaper than intersecting with an entity that holds a million rows.
"""

import logging

from django.db import migrations

logger = logging.getLogger("axiomatic.migrations")

LEAKPROOF = ["upper(text)", "textlike(text, text)", "textcat(text, text)"]
INDEXES = {
    "crm_company_name_trgm": "crm_company USING gin (UPPER(name) gin_trgm_ops)",
    "crm_contact_name_trgm": "crm_contact USING gin (UPPER(first_name || ' ' || last_name) gin_trgm_ops)",
    "crm_contact_email_trgm": "crm_contact USING gin (UPPER(email) gin_trgm_ops)",
    "crm_lead_title_trgm": "crm_lead USING gin (UPPER(title) gin_trgm_ops)",
}
OLD_INDEXES = {
    "crm_company_name_trgm": "crm_company USING gin (entity_id, UPPER(name) gin_trgm_ops)",
    "crm_contact_name_trgm": "crm_contact USING gin (entity_id, UPPER(first_name || ' ' || last_name) gin_trgm_ops)",
    "crm_contact_email_trgm": "crm_contact USING gin (entity_id, UPPER(email) gin_trgm_ops)",
    "crm_lead_title_trgm": "crm_lead USING gin (entity_id, UPPER(title) gin_trgm_ops)",
}


def _replace(schema_editor, indexes: dict[str, str]) -> None:
    with schema_editor.connection.cursor() as cursor:
        for name, definition in indexes.items():
            cursor.execute(f"DROP INDEX IF EXISTS {name}")
            cursor.execute(f"CREATE INDEX {name} ON {definition}")


def forward(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    _replace(schema_editor, INDEXES)
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        (superuser,) = cursor.fetchone()
        if superuser:
            for function in LEAKPROOF:
                cursor.execute(f"ALTER FUNCTION {function} LEAKPROOF")
        else:
            logger.warning(
                "Not a superuser: search under row-level security scans instead of using the trigram "
                "indexes until a superuser runs ALTER FUNCTION ... LEAKPROOF for %s (docs/operations.md).",
                ", ".join(LEAKPROOF),
            )


def reverse(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    _replace(schema_editor, OLD_INDEXES)


class Migration(migrations.Migration):
    dependencies = [("crm", "0008_admin_order_indexes")]

    operations = [migrations.RunPython(forward, reverse, elidable=False)]
