"""The sharding readiness report (axiomatic/ops/sharding.py) from the live test schema.

The test prints the report (run with `-s` to read it) so the gap to sharding by entity stays in
sight as migrations change the schema; it fails when a table is unclassified or classified
against the rules docs/scaling.md sets out.
"""

from __future__ import annotations

import json

from django.apps import apps
from django.core.management import call_command
from django.db import connection

from axiomatic.ops.sharding import DISTRIBUTED, KINDS, LOCAL, REFERENCE, ROOT, sharding_report
from axiomatic.rls import tenant_tables


def test_every_table_of_the_live_schema_is_classified(db, capsys):
    report = sharding_report()
    with capsys.disabled():
        print("\n" + report.as_text())
    names = [table.table for table in report.tables]
    with connection.cursor() as cursor:
        live = set(connection.introspection.table_names(cursor))
    assert set(names) == live and len(names) == len(set(names))  # every table, once
    assert all(table.kind in KINDS for table in report.tables)
    kinds = {table.table: table.kind for table in report.tables}
    # Every tenant model's table (an entity_id column) is distributed; the entities are the root.
    for table in tenant_tables(apps.get_models()):
        assert kinds[table] == DISTRIBUTED, table
    assert [table.table for table in report.of_kind(ROOT)] == ["axiomatic_entity"]
    assert kinds["axiomatic_user"] == REFERENCE  # members of many entities: on every node
    assert kinds["django_migrations"] == LOCAL and kinds["django_session"] == LOCAL


def test_the_gaps_follow_citus_rules(db):
    report = sharding_report()
    by_name = {table.table: table for table in report.tables}
    company = by_name["crm_company"]
    # Today's primary keys are (id) alone: Citus needs the distribution column in them.
    assert company.primary_key == ["id"]
    assert any(gap.startswith("primary key") and "lacks entity_id" in gap for gap in company.gaps)
    # entity_id → axiomatic_entity(id) is the distribution column itself: never a gap.
    assert not any("(entity_id) → axiomatic_entity" in gap for gap in company.gaps)
    # A foreign key between two distributed tables must carry entity_id on both sides.
    contact_gaps = by_name["crm_contact"].gaps + by_name["crm_lead"].gaps
    assert any("→ crm_company (id) lacks entity_id" in gap for gap in contact_gaps)
    # Reference and local tables are never asked for entity_id.
    assert all(
        "lacks entity_id" not in gap
        for table in report.tables
        if table.kind in (REFERENCE, LOCAL)
        for gap in table.gaps
    )
    summary = report.summary()
    assert summary["sharded"] == summary[ROOT] + summary[DISTRIBUTED]
    assert summary["gaps"] == sum(len(table.gaps) for table in report.tables)


def test_the_command_prints_the_report_as_text_or_json(db, capsys):
    call_command("sharding_report")
    text = capsys.readouterr().out
    assert text.startswith("Sharding readiness by entity_id (Citus)") and "DISTRIBUTED (" in text
    call_command("sharding_report", "--json")
    payload = json.loads(capsys.readouterr().out)
    assert payload["distributionColumn"] == "entity_id"
    assert {table["kind"] for table in payload["tables"]} <= set(KINDS)
