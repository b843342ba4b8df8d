"""`cf.<key>=` equality is served by the GIN `jsonb_path_ops` index, also under row-level security
(which uses an index condition only when its functions are LEAKPROOF: crm migration 0016)."""

from __future__ import annotations

import pytest
from django.db import connection, transaction

from axiomatic.tenancy.database import enter_entity
from crm.models import Company, Contact, Lead
from crm.selectors.custom_fields import equals_q
from crm.services.custom_fields import custom_field_create
from tests import factories

OPTIONS = [{"value": "emea", "label": "EMEA"}, {"value": "apac", "label": "APAC"}]


def _plan(queryset) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")  # bitmap scans only: which index serves it?
    return queryset.explain()


@pytest.mark.parametrize(
    "model,object_type,kind,value,index",
    [
        (Company, "company", "select", "emea", "crm_company_custom_fields_gin"),
        (Company, "company", "multiselect", "apac", "crm_company_custom_fields_gin"),
        (Contact, "contact", "text", "x", "crm_contact_custom_fields_gin"),
        (Lead, "lead", "number", "12.5", "crm_lead_custom_fields_gin"),
    ],
)
def test_equality_uses_the_gin_index_as_the_app_role(entity, model, object_type, kind, value, index):
    extra = {"options": OPTIONS} if kind in ("select", "multiselect") else {}
    definition = custom_field_create(
        entity=entity, object_type=object_type, key="probe", label="Probe", type=kind, **extra
    )
    factories.make_company(entity, name="Acme")
    with transaction.atomic():
        enter_entity(entity.pk)
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_user")
            (role,) = cursor.fetchone()
        # No entity filter (row-level security scopes it): only the GIN index can serve the query,
        # and PostgreSQL may use it only if jsonb_contains is LEAKPROOF.
        plan = _plan(model.objects.filter(equals_q(definition, value)).order_by("pk")[:51])
    assert role != "postgres"
    assert index in plan, plan


def test_jsonb_contains_is_leakproof(db):
    with connection.cursor() as cursor:
        cursor.execute("SELECT proleakproof FROM pg_proc WHERE oid = 'jsonb_contains(jsonb, jsonb)'::regprocedure")
        assert cursor.fetchone()[0] is True
