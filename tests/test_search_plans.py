"""`q` searches are served by the trigram indexes, also under row-level security."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.db.models import Q

from axiomatic.tenancy import set_transaction_entity
from crm.api.contacts import FullName
from crm.models import Company, Contact, Lead
from tests import factories

SEARCHES = [
    (Company, lambda: Q(name__icontains="cme co"), "crm_company_name_trgm"),
    (Lead, lambda: Q(title__icontains="renewal"), "crm_lead_title_trgm"),
]


def _plan(queryset) -> str:
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("SET LOCAL enable_indexscan = off")  # bitmap scans only: which index serves it?
        return queryset.explain()


@pytest.mark.parametrize("model,condition,index", SEARCHES)
def test_search_uses_its_trigram_index_as_the_app_role(entity, model, condition, index):
    factories.make_company(entity, name="Acme Co")
    with transaction.atomic():
        set_transaction_entity(entity.pk)
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_user")
            (role,) = cursor.fetchone()
        # No entity filter in the query (row-level security scopes it), so no entity index can
        # serve it: the trigram index is used only if PostgreSQL may run LIKE before the policy.
        plan = _plan(model.objects.filter(condition()).order_by("pk")[:51])
    assert role != "postgres"  # queries run as the application role, under row-level security
    assert index in plan, plan


def test_contact_name_search_uses_the_full_name_index(entity):
    with transaction.atomic():
        set_transaction_entity(entity.pk)
        queryset = Contact.objects.annotate(n=FullName("first_name", "last_name"))
        plan = _plan(queryset.filter(n__icontains="ada love")[:51])
    assert "crm_contact_name_trgm" in plan, plan
