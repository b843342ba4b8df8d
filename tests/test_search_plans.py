"""`q` searches are served by the trigram indexes, also under row-level security."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.db.models import Q
from django.test.utils import CaptureQueriesContext

from axiomatic import ordering
from axiomatic.tenancy.database import enter_entity
from crm.models import Company, Contact, Lead
from crm.selectors.contacts import FullName
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
        enter_entity(entity.pk)
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
        enter_entity(entity.pk)
        queryset = Contact.objects.annotate(n=FullName("first_name", "last_name"))
        plan = _plan(queryset.filter(n__icontains="ada love")[:51])
    assert "crm_contact_name_trgm" in plan, plan


def test_a_search_with_few_matches_is_sorted_not_walked(api, entity, monkeypatch):
    """Matches PostgreSQL expects to be few are ordered by one row value, which no index serves,
    so they are found through the trigram index and sorted (a surname's matches sit together in
    the name order, where walking the name index for them read the whole table). Many expected
    matches keep the plain order. Either way the rows and their order are the same."""
    for n in range(12):
        factories.make_contact(entity, first_name=f"Ann {n % 3}", last_name=("Zhang", "Abara")[n % 2])

    def search() -> tuple[list[str], str]:
        with CaptureQueriesContext(connection) as queries:
            body = api.get("/contacts", {"q": "zhang", "pageSize": 4}).json()
        # Read now: the next request clears the connection's query log.
        (page_sql,) = [q["sql"] for q in queries.captured_queries if "LIMIT 5" in q["sql"]]
        ids = [row["id"] for row in body["contacts"]]
        cursor = body["nextCursor"]
        while cursor:
            body = api.get("/contacts", {"q": "zhang", "cursor": cursor}).json()
            ids += [row["id"] for row in body["contacts"]]
            cursor = body["nextCursor"]
        return ids, page_sql

    expected = [
        str(pk)
        for pk in Contact.objects.filter(entity=entity, last_name="Zhang")
        .order_by("last_name", "first_name", "id")
        .values_list("pk", flat=True)
    ]
    sorted_ids, sorted_sql = search()
    assert sorted_ids == expected
    assert 'ORDER BY ("crm_contact"."last_name", "crm_contact"."first_name", "crm_contact"."id") ASC' in sorted_sql

    monkeypatch.setattr(ordering, "SORT_MATCHES_UP_TO", 0)  # as if many matches were expected
    walked_ids, walked_sql = search()
    assert walked_ids == expected
    assert 'ORDER BY "crm_contact"."last_name" ASC, "crm_contact"."first_name" ASC' in walked_sql


def test_ordering_a_search_that_matches_nothing_by_construction(entity):
    """`pk__in=[]` compiles to no SQL at all: the estimate is then 0, not an error."""
    nothing = Contact.objects.filter(pk__in=[]).order_by("last_name", "first_name", "id")
    assert list(ordering.order_matches(nothing, [("last_name", False), ("first_name", False), ("id", False)])) == []
