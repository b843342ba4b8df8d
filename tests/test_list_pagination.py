"""Lists at scale: exact O(1) totals, capped filtered counts, keyset cursors, and one query a page."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from axiomatic.api.pagination import COUNT_CAP
from axiomatic.models import EntityCounter
from crm.models import Activity, Company, Contact, Lead, PipelineFigure
from tests import factories
from tests.helpers import assert_error

LISTS = ["/companies", "/contacts", "/leads", "/activities", "/tasks", "/api/marketing/lists"]


def _sql(queries) -> list[str]:
    return [q["sql"] for q in queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE SAVEPOINT"))]


def _walk(api, path: str, **params) -> list[str]:
    ids, cursor, pages = [], None, 0
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        body = api.get(path, query).json()
        key = next(k for k in body if isinstance(body[k], list))
        ids += [row["id"] for row in body[key]]
        pages += 1
        if cursor:
            assert body["page"] is None
        cursor = body["nextCursor"]
        assert body["hasMore"] is (cursor is not None)
        if cursor is None:
            return ids
        assert pages < 100


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize("page_size", [5, 200])
def test_a_list_page_costs_three_queries_with_authentication(api, entity, path, page_size):
    for index in range(7):
        factories.make_company(entity, name=f"C{index}")
        factories.make_contact(entity, first_name=f"P{index}")
        factories.make_lead(entity, title=f"L{index}")
        factories.make_task(entity, subject=f"T{index}")
        factories.make_list(entity)
    api.get(path)  # the first use of a key records lastUsedAt
    with CaptureQueriesContext(connection) as queries:
        response = api.get(path, {"pageSize": page_size})
    assert response.status_code == 200, response.content
    statements = _sql(queries.captured_queries)
    assert len(statements) <= 3, statements


def test_unfiltered_totals_are_maintained_exactly_by_every_kind_of_write(api, entity, other_entity):
    created = api.post("/companies", {"name": "Via API"}).json()["company"]
    Company.objects.bulk_create([Company(entity=entity, name=f"Bulk {i}") for i in range(5)])
    factories.make_company(other_entity)
    with pytest.raises(RuntimeError), transaction.atomic():
        factories.make_company(entity, name="Rolled back")
        raise RuntimeError
    Company.objects.filter(entity=entity, name="Bulk 0").delete()
    api.patch(f"/companies/{created['id']}", {"role": "vendor", "status": "inactive"})

    body = api.get("/companies").json()
    assert (body["total"], body["totalExact"]) == (5, True)
    assert body["total"] == Company.objects.filter(entity=entity).count()
    counters = dict(EntityCounter.objects.filter(entity=entity).values_list("name", "value"))
    assert counters["company"] == 5
    assert counters["company.role.vendor"] == 1 and counters["company.status.inactive"] == 1
    assert counters["company.role.prospect"] == 4


def test_the_unfiltered_total_reads_the_counter_not_the_rows(api, entity):
    factories.make_company(entity)
    api.get("/companies")
    with CaptureQueriesContext(connection) as queries:
        assert api.get("/companies").json()["total"] == 1
    page_query = next(q for q in _sql(queries.captured_queries) if 'FROM "crm_company"' in q)
    assert "axiomatic_entitycounter" in page_query and "COUNT(" not in page_query.upper()


def test_a_filtered_total_stops_counting_past_ten_thousand(api, entity):
    Company.objects.bulk_create(
        [Company(entity=entity, name=f"Customer {i:05}", role="customer") for i in range(COUNT_CAP + 5)]
    )
    Company.objects.bulk_create([Company(entity=entity, name=f"Vendor {i}", role="vendor") for i in range(3)])
    capped = api.get("/companies", {"role": "customer", "pageSize": 2}).json()
    assert (capped["total"], capped["totalExact"], capped["hasMore"]) == (COUNT_CAP, False, True)
    exact = api.get("/companies", {"role": "vendor"}).json()
    assert (exact["total"], exact["totalExact"]) == (3, True)
    everything = api.get("/companies", {"pageSize": 1}).json()
    assert (everything["total"], everything["totalExact"]) == (COUNT_CAP + 8, True)  # unfiltered: exact


def test_a_cursor_walk_returns_every_row_once_in_list_order(api, entity):
    for index in range(23):
        factories.make_company(entity, name=f"Same name {index % 3}")  # ties broken by id
    walked = _walk(api, "/companies", pageSize=5)
    expected = [
        str(pk) for pk in Company.objects.filter(entity=entity).order_by("name", "id").values_list("pk", flat=True)
    ]
    assert walked == expected


def test_a_cursor_seeks_past_rows_sharing_its_first_columns_with_one_row_comparison(api, entity):
    """Contacts are ordered by surname, first name, id: with few surnames, the cursor's condition
    is one row value `(last_name, first_name, id) > (...)`, which the ordering index seeks to
    (the expanded OR form would read every row of the cursor's surname)."""
    for index in range(14):
        factories.make_contact(entity, first_name=f"First {index % 4}", last_name=f"Surname {index % 2}")
    walked = _walk(api, "/contacts", pageSize=3)
    expected = Contact.objects.filter(entity=entity).order_by("last_name", "first_name", "id")
    assert walked == [str(pk) for pk in expected.values_list("pk", flat=True)]
    cursor = api.get("/contacts", {"pageSize": 3}).json()["nextCursor"]
    with CaptureQueriesContext(connection) as queries:
        assert api.get("/contacts", {"cursor": cursor}).status_code == 200
    (page_sql,) = [sql for sql in _sql(queries) if 'FROM "crm_contact"' in sql and "LIMIT" in sql]
    assert '("crm_contact"."last_name", "crm_contact"."first_name", "crm_contact"."id") >' in page_sql


def test_rows_written_between_pages_never_make_a_walk_skip_or_repeat(api, entity):
    for index in range(12):
        factories.make_company(entity, name=f"Firm {index:02}")
    first = api.get("/companies", {"pageSize": 4}).json()
    seen = [row["id"] for row in first["companies"]]
    factories.make_company(entity, name="Firm 00a")  # sorts into the page already read
    Company.objects.filter(entity=entity, name="Firm 09").delete()  # a row not yet read goes away
    factories.make_company(entity, name="Firm 10a")  # a row ahead
    cursor = first["nextCursor"]
    while cursor:
        body = api.get("/companies", {"cursor": cursor}).json()
        seen += [row["id"] for row in body["companies"]]
        cursor = body["nextCursor"]
    assert len(seen) == len(set(seen))
    names = list(Company.objects.filter(pk__in=seen).order_by("name").values_list("name", flat=True))
    survivors = {f"Firm {i:02}" for i in range(12)} - {"Firm 09"}
    assert survivors <= set(names)
    assert "Firm 00a" not in names and "Firm 10a" in names


def test_cursors_follow_descending_and_nulls_last_orders(api, entity, user):
    for index in range(7):
        factories.make_lead(entity, title=f"Lead {index}")
    walked = _walk(api, "/leads", pageSize=3)
    assert walked == [
        str(pk) for pk in Lead.objects.filter(entity=entity).order_by("-updated_at", "id").values_list("pk", flat=True)
    ]
    now = timezone.now()
    for index in range(5):
        factories.make_task(entity, subject=f"Dated {index}", due=now + timedelta(days=index % 3 - 1))
    for index in range(4):
        factories.make_task(entity, subject=f"Undated {index}")
    tasks = _walk(api, "/tasks", pageSize=2)
    expected = Activity.objects.filter(entity=entity, type="task").order_by("due_at", "id")
    dated = [str(t.pk) for t in expected if t.due_at is not None]
    undated = sorted(str(t.pk) for t in expected if t.due_at is None)
    assert tasks == dated + undated


def test_bad_cursors_are_refused(api, other_api, entity, other_entity):
    for index in range(4):
        factories.make_company(entity, name=f"Co {index}")
        factories.make_company(other_entity, name=f"Other {index}")
    cursor = api.get("/companies", {"pageSize": 2}).json()["nextCursor"]
    assert cursor
    assert "cursor" in assert_error(api.get("/companies", {"cursor": cursor[:-3] + "abc"}), 400)["details"]
    assert_error(api.get("/companies", {"cursor": cursor, "page": 2}), 400)
    assert_error(api.get("/companies", {"cursor": cursor, "pageSize": 3}), 400)
    assert_error(api.get("/companies", {"cursor": cursor, "role": "vendor"}), 400)
    assert_error(api.get("/contacts", {"cursor": cursor}), 400)
    assert_error(other_api.get("/companies", {"cursor": cursor}), 400)  # another entity's list
    assert api.get("/companies", {"cursor": cursor, "pageSize": 2}).status_code == 200


def test_the_total_is_the_whole_lists_on_cursor_pages_and_empty_pages(api, entity):
    for index in range(5):
        factories.make_company(entity, name=f"Co {index}")
    first = api.get("/companies", {"pageSize": 2}).json()
    second = api.get("/companies", {"cursor": first["nextCursor"]}).json()
    assert (second["total"], second["pageSize"], len(second["companies"])) == (5, 2, 2)
    beyond = api.get("/companies", {"page": 99}).json()
    assert (beyond["companies"], beyond["total"], beyond["hasMore"], beyond["nextCursor"]) == ([], 5, False, None)


def _figures(entity) -> dict:
    rows = PipelineFigure.objects.filter(entity=entity).values_list("stage_id", "lead_count")
    totals: dict = {}
    for stage_id, count in rows:
        totals[stage_id] = totals.get(stage_id, 0) + count
    return {k: v for k, v in totals.items() if v}


def _counted(entity) -> dict:
    from django.db.models import Count

    rows = Lead.objects.filter(entity=entity).values("stage_id").annotate(n=Count("id"))
    return {row["stage_id"]: row["n"] for row in rows}


@pytest.mark.django_db(transaction=True)
def test_pipeline_figures_stay_exact_under_concurrent_writers(make_api, entity):
    leads = [factories.make_lead(entity, "new", title=f"Deal {i}", value="100.00") for i in range(24)]
    stages = ["contacted", "qualified", "proposal", "won", "lost", "new"]
    errors: list = []

    def mover(offset: int) -> None:
        client = make_api()
        try:
            for step, lead in enumerate(leads[offset::4]):
                response = client.patch(f"/leads/{lead.pk}/stage", {"stage": stages[(step + offset) % len(stages)]})
                if response.status_code != 200:
                    errors.append(response.content)
        finally:
            connection.close()

    threads = [threading.Thread(target=mover, args=(offset,)) for offset in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive()
    assert not errors
    assert _figures(entity) == _counted(entity)
    money = PipelineFigure.objects.filter(entity=entity).values_list("value_sum", flat=True)
    assert sum(money) == 2400


def test_deep_offset_pages_read_the_right_rows(api, entity):
    Company.objects.bulk_create([Company(entity=entity, name=f"Firm {i:05}") for i in range(1_100)])
    body = api.get("/companies", {"page": 22, "pageSize": 50}).json()  # offset 1050: ids first
    assert [row["name"] for row in body["companies"]] == [f"Firm {i:05}" for i in range(1_050, 1_100)]
    assert (body["total"], body["hasMore"], body["nextCursor"]) == (1_100, False, None)
