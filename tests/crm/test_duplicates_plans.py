"""The duplicates' reads use their indexes as the application role, under row-level security: the
list's page index, the key indexes of a write's lookups, and the trigram index on the companies'
normalised names (usable because `similarity_op` is LEAKPROOF, set by migration 0018)."""

from __future__ import annotations

import pytest
from django.db import connection, transaction

from axiomatic.rls import owner_session
from axiomatic.tenancy.database import enter_entity
from crm.models import Company, CompanyDuplicate, Contact, ContactDuplicate
from crm.models.keys import company_keys, contact_keys
from tests import factories

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif("connection.vendor != 'postgresql'", reason="plans and row-level security are PostgreSQL's"),
]


def _plan(sql_or_queryset, params=(), *, ordered: bool = False) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        if ordered:  # a page read in index order, as at scale (an empty table would sort instead)
            cursor.execute("SET LOCAL enable_sort = off")
        if isinstance(sql_or_queryset, str):
            cursor.execute("EXPLAIN " + sql_or_queryset, list(params))
            return "\n".join(row[0] for row in cursor.fetchall())
    return sql_or_queryset.explain()


@pytest.mark.parametrize(
    "model,index", [(ContactDuplicate, "contactduplicate_page_idx"), (CompanyDuplicate, "companyduplicate_page_idx")]
)
def test_the_list_page_walks_its_index(entity, model, index):
    with transaction.atomic():
        enter_entity(entity.pk)
        plan = _plan(model.objects.for_entity(entity).order_by("-score", "id")[:51], ordered=True)
    assert index in plan, plan


@pytest.mark.parametrize(
    "model,field,index",
    [
        (Contact, "email_key", "contact_entity_email_key_idx"),
        (Contact, "phone_key", "contact_entity_phone_key_idx"),
        (Company, "name_key", "company_entity_name_key_idx"),
        (Company, "website_host", "company_entity_host_key_idx"),
    ],
)
def test_equal_keys_are_index_lookups(entity, model, field, index):
    """As `crm.services.duplicates._equal_key` asks (no ORDER BY: a default order would walk the
    name index instead), on a table with statistics: 400 rows, each key distinct."""
    if model is Contact:
        rows = [
            Contact(entity=entity, first_name=f"P{n}", last_name="Q", email=f"p{n}@x.example", phone=f"0301{n:05d}")
            for n in range(400)
        ]
    else:
        rows = [Company(entity=entity, name=f"Firm {n}", website=f"https://firm{n}.example") for n in range(400)]
    for row in rows:
        row.__dict__.update(contact_keys(row) if model is Contact else company_keys(row))
    model.objects.bulk_create(rows)
    with owner_session(), connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {model._meta.db_table}")
    with transaction.atomic():
        enter_entity(entity.pk)
        plan = _plan(
            model.objects.filter(entity_id=entity.pk, **{field: "x"}).order_by().values_list("pk", flat=True)[:100]
        )
    assert index in plan, plan


def test_similar_company_names_use_the_trigram_index(entity):
    factories.make_company(entity, name="Globex Corporation")
    with transaction.atomic():
        enter_entity(entity.pk)
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_user")
            assert cursor.fetchone()[0] != "postgres"
        # No entity filter (row-level security scopes it; in an entity of a million companies the
        # entity index is no competition): the trigram index serves `%` only if it may run first.
        plan = _plan("SELECT id FROM crm_company WHERE name_key %% %s LIMIT 100", ["globex corp"])
    assert "crm_company_name_key_trgm" in plan, plan
