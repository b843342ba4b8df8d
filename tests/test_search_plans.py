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
    """Past page 1, matches PostgreSQL expects to be few are ordered by one row value, which no
    index serves, so they are found through the trigram index and sorted (a surname's matches sit
    together in the name order, where walking the name index for them read the whole table). Many
    expected matches keep the plain order. Page 1, its bounded walk coming back short, is sorted
    whatever the estimate. Either way the rows and their order are the same."""
    for n in range(12):
        factories.make_contact(entity, first_name=f"Ann {n % 3}", last_name=("Zhang", "Abara")[n % 2])
    monkeypatch.setattr(ordering, "WALK_ROWS", 2)  # page 1's walk reads two rows: short, as for a rare term

    def search() -> tuple[list[str], str, str]:
        with CaptureQueriesContext(connection) as queries:
            body = api.get("/contacts", {"q": "zhang", "pageSize": 4}).json()
        # Read now: the next request clears the connection's query log.
        # Page 1: the short walk, then the matches found, counted and sorted in one statement.
        (first_sql,) = [
            q["sql"]
            for q in queries.captured_queries
            if q["sql"].startswith("SELECT") and "LIMIT 5" in q["sql"] and "OVER ()" in q["sql"]
        ]
        ids = [row["id"] for row in body["contacts"]]
        cursor, later_sql = body["nextCursor"], ""
        while cursor:
            with CaptureQueriesContext(connection) as queries:
                body = api.get("/contacts", {"q": "zhang", "cursor": cursor}).json()
            later_sql = later_sql or next(q["sql"] for q in queries.captured_queries if "LIMIT 5" in q["sql"])
            ids += [row["id"] for row in body["contacts"]]
            cursor = body["nextCursor"]
        return ids, first_sql, later_sql

    expected = [
        str(pk)
        for pk in Contact.objects.filter(entity=entity, last_name="Zhang")
        .order_by("last_name", "first_name", "id")
        .values_list("pk", flat=True)
    ]
    row_order = 'ORDER BY ("crm_contact"."last_name", "crm_contact"."first_name", "crm_contact"."id") ASC'
    plain_order = 'ORDER BY "crm_contact"."last_name" ASC, "crm_contact"."first_name" ASC'
    sorted_ids, first_sql, later_sql = search()
    assert sorted_ids == expected
    assert row_order in first_sql and row_order in later_sql

    monkeypatch.setattr(ordering, "SORT_MATCHES_UP_TO", 0)  # as if many matches were expected
    walked_ids, first_sql, later_sql = search()
    assert walked_ids == expected
    assert row_order in first_sql  # page 1 after a short walk: sorted, whatever the estimate
    assert plain_order in later_sql


# --- page 1: the bounded walk first, the trigram index when it comes back short ---------------

_WALK_SETTINGS = "SET LOCAL enable_bitmapscan = off"


def _company_page_one(api, q: str) -> tuple[dict, list[str]]:
    with CaptureQueriesContext(connection) as queries:
        response = api.get("/companies", {"q": q, "pageSize": 5})
    assert response.status_code == 200
    return response.json(), [query["sql"] for query in queries.captured_queries]


def _walk_plan(walk_sql: str) -> str:
    """EXPLAIN of the walk exactly as sent (its settings, then its SELECT), as the app role."""
    settings_sql, select_sql = walk_sql.split("; SELECT", 1)
    select_sql = "SELECT" + select_sql.rsplit("; SET LOCAL", 2)[0]
    with transaction.atomic(), connection.cursor() as cursor:
        for statement in settings_sql.split(";"):
            if statement.strip():
                cursor.execute(statement)
        cursor.execute("EXPLAIN " + select_sql)
        return "\n".join(row[0] for row in cursor.fetchall())


@pytest.fixture
def names(entity, monkeypatch):
    """60 companies: "Frequent" in every third name (all along the name order), "Rarity" only in
    the last two names; the walk reads the first 30 rows."""
    monkeypatch.setattr(ordering, "WALK_ROWS", 30)
    rows = [
        f"{chr(ord('a') + n // 26)}{chr(ord('a') + n % 26)} {'Frequent' if n % 3 == 0 else 'Plain'} Co"
        for n in range(58)
    ]
    rows += ["zz Rarity One", "zz Rarity Two"]
    for name in rows:
        factories.make_company(entity, name=name)
    return sorted(rows)


def test_a_frequent_term_is_found_by_the_bounded_walk_of_the_name_index(api, names):
    body, sql = _company_page_one(api, "frequent")
    assert [row["name"] for row in body["companies"]] == [name for name in names if "Frequent" in name][:5]
    assert body["total"] == 20 and body["hasMore"] is True
    (walk,) = [statement for statement in sql if statement.startswith(_WALK_SETTINGS)]
    assert not any(statement.startswith("EXPLAIN") for statement in sql)  # no estimate needed
    plan = _walk_plan(walk)
    # Bounded by the position in the order; never through the trigram index, whatever the estimate
    # (which index walks the 60 rows of this test is the planner's choice; at scale, the name index).
    assert "id) <= ROW(" in plan and "Bitmap" not in plan and "trgm" not in plan, plan
    # The page's rows are then read by primary key, in the list's order.
    (page,) = [
        statement for statement in sql if statement.startswith('SELECT "crm_company"."id"') and " IN (" in statement
    ]
    assert 'ORDER BY "crm_company"."name" ASC' in page
    # The next page goes on from the walked page's last row.
    following = api.get("/companies", {"q": "frequent", "cursor": body["nextCursor"]}).json()["companies"]
    assert [row["name"] for row in following] == [name for name in names if "Frequent" in name][5:10]


def test_a_rare_term_falls_back_to_the_trigram_index_and_a_sort(api, names):
    body, sql = _company_page_one(api, "rarity")
    assert not any(statement.startswith("EXPLAIN") for statement in sql)  # short walk: sorted, no estimate
    assert [row["name"] for row in body["companies"]] == ["zz Rarity One", "zz Rarity Two"]
    assert body["total"] == 2 and body["hasMore"] is False
    walks = [statement for statement in sql if statement.startswith(_WALK_SETTINGS)]
    assert len(walks) == 1  # tried first, came back short (the matches are past its 30 rows)
    (found,) = [statement for statement in sql if "LIMIT 6" in statement and "OVER ()" in statement]
    assert 'ORDER BY ("crm_company"."name", "crm_company"."id") ASC' in found  # sorted, not walked
    # ... and counted by the same scan (a window over the matches): no capped count reads them again.
    assert not any("AS counted" in statement for statement in sql), sql
    with transaction.atomic():
        enter_entity(api.entity.pk)
        plan = _plan(Company.objects.filter(name__icontains="rarity").order_by("pk")[:6])
    assert "crm_company_name_trgm" in plan, plan


def test_an_absent_term_answers_an_empty_page_after_a_short_walk(api, names):
    body, sql = _company_page_one(api, "absentee")
    assert body["companies"] == [] and body["total"] == 0 and body["nextCursor"] is None
    assert len([statement for statement in sql if statement.startswith(_WALK_SETTINGS)]) == 1


def test_the_walk_leaves_no_setting_behind(api, names):
    api.get("/companies", {"q": "frequent"})
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('enable_bitmapscan'), current_setting('enable_seqscan'), "
            "current_setting('max_parallel_workers_per_gather')"
        )
        bitmap, seqscan, workers = cursor.fetchone()
    assert bitmap == "on" and seqscan == "on" and workers != "0"


def test_the_header_search_and_the_pages_walk_first_too(signed_in, entity, names):
    with CaptureQueriesContext(connection) as queries:
        found = signed_in.get("/crm/search", {"q": "frequent"})
    assert found.status_code == 200 and "aa Frequent Co" in found.content.decode()
    assert any(q["sql"].startswith(_WALK_SETTINGS) and "crm_company" in q["sql"] for q in queries.captured_queries)
    with CaptureQueriesContext(connection) as queries:
        listed = signed_in.get("/crm/companies", {"q": "frequent"})
    assert listed.status_code == 200 and "aa Frequent Co" in listed.content.decode()
    assert any(q["sql"].startswith(_WALK_SETTINGS) for q in queries.captured_queries)


def test_ordering_a_search_that_matches_nothing_by_construction(entity):
    """`pk__in=[]` compiles to no SQL at all: the estimate is then 0, not an error."""
    nothing = Contact.objects.filter(pk__in=[]).order_by("last_name", "first_name", "id")
    assert list(ordering.order_matches(nothing, [("last_name", False), ("first_name", False), ("id", False)])) == []


def test_the_sorted_fallback_caps_its_count_like_any_filtered_list(api, names, monkeypatch):
    from axiomatic.api import pagination

    monkeypatch.setattr(pagination, "COUNT_CAP", 1)
    body, _ = _company_page_one(api, "rarity")
    assert (body["total"], body["totalExact"], len(body["companies"])) == (1, False, 2)
