"""Foundation pieces later work stands on: the entity in the transaction, loud production settings,
and default stages for entities that predate them."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

from django.apps import apps as django_apps
from django.db import connection
from django.test.utils import CaptureQueriesContext

from crm.models import PipelineStage
from crm.services.pipeline import DEFAULT_STAGES


def test_each_api_request_tells_its_transaction_the_current_entity(api, entity):
    api.get("/companies")  # the key's first use records lastUsedAt (in its entity, after the request)
    with CaptureQueriesContext(connection) as queries:
        assert api.get("/companies").status_code == 200
    settings_sql = [q for q in queries.captured_queries if "set_config('app.entity_id'" in q["sql"]]
    assert len(settings_sql) == 1
    assert str(entity.pk) in settings_sql[0]["sql"]


def test_the_entity_setting_is_local_to_the_request_transaction(transactional_db, api):
    # A real transaction per request (not the test's wrapping one): the setting must end with it,
    # so a pooled connection never carries one request's entity into the next.
    assert api.get("/companies").status_code == 200
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('app.entity_id', true)")
        (value,) = cursor.fetchone()
    assert value in (None, "")


def _settings_import(env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "FIELD_ENCRYPTION_KEYS", "DEBUG")}
    return subprocess.run(
        [sys.executable, "-c", "import axiomatic.settings"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_settings_refuse_to_start_without_a_secret_key():
    result = _settings_import({"DEBUG": "0", "FIELD_ENCRYPTION_KEYS": "x"})
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_production_settings_refuse_to_start_without_encryption_keys():
    result = _settings_import({"DEBUG": "0", "SECRET_KEY": "s"})
    assert result.returncode != 0
    assert "FIELD_ENCRYPTION_KEYS must be set" in result.stderr


def test_demo_settings_start_without_any_secret():
    assert _settings_import({"DEBUG": "1"}).returncode == 0


def test_data_migration_gives_default_stages_to_entities_without_stages(entity, other_entity):
    PipelineStage.objects.for_entity(entity).delete()
    migration = importlib.import_module("crm.migrations.0002_default_stages_for_existing_entities")

    migration.install_defaults(django_apps, None)

    stages = list(PipelineStage.objects.for_entity(entity).order_by("sort_order"))
    assert [(s.name, s.kind, s.default_probability_pct, s.system_key, s.color_key) for s in stages] == [
        (name, str(kind), probability, key, color) for name, kind, probability, key, color in DEFAULT_STAGES
    ]
    # An entity that already had stages is left alone.
    assert PipelineStage.objects.for_entity(other_entity).count() == len(DEFAULT_STAGES)
