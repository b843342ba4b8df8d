"""The `cf.*` filters of the company, contact and lead lists (CONTRACT §13)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests import factories
from tests.helpers import assert_error

OPTIONS = [{"value": "emea", "label": "EMEA"}, {"value": "apac", "label": "APAC"}, {"value": "amer", "label": "AM"}]


def define(api, key, kind, object_type="company", **extra):
    response = api.post("/custom-fields", {"objectType": object_type, "key": key, "label": key, "type": kind, **extra})
    assert response.status_code == 201, response.content
    return response.json()["customField"]


def names(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["name"] for row in response.json()["companies"]]


@pytest.fixture
def world(api, entity, user):
    colleague = factories.make_member(entity)
    define(api, "code", "text")
    define(api, "seats", "number")
    define(api, "renewal", "date")
    define(api, "signed_at", "datetime")
    define(api, "vip", "boolean")
    define(api, "tier", "select", options=OPTIONS)
    define(api, "markets", "multiselect", options=OPTIONS)
    define(api, "site", "url")
    define(api, "billing", "email")
    define(api, "manager", "user")
    define(api, "budget", "currency")
    rows = {
        "Alpha": {
            "code": "A-1",
            "seats": 5,
            "renewal": "2026-01-31",
            "signed_at": "2026-01-01T10:00:00Z",
            "vip": True,
            "tier": "emea",
            "markets": ["emea", "apac"],
            "site": "https://alpha.example",
            "billing": "Bill@Alpha.example",
            "manager": str(user.pk),
            "budget": {"currency": "EUR", "amount": "100"},
        },
        "Beta": {
            "code": "B-1",
            "seats": "12.5",
            "renewal": "2026-06-30",
            "signed_at": "2026-01-01T12:00:00+01:00",
            "vip": False,
            "tier": "apac",
            "markets": ["apac"],
            "manager": str(colleague.pk),
            "budget": {"currency": "USD", "amount": "2500.50"},
        },
        "Gamma": {},
    }
    for name, values in rows.items():
        response = api.post("/companies", {"name": name, "customFields": values, "role": "customer"})
        assert response.status_code == 201, response.content
    return {"colleague": colleague}


@pytest.mark.parametrize(
    "params,expected",
    [
        ({"cf.code": "A-1"}, ["Alpha"]),
        ({"cf.code": "a-1"}, []),
        ({"cf.seats": "12.50"}, ["Beta"]),
        ({"cf.seats": "5"}, ["Alpha"]),
        ({"cf.seats.gte": "5"}, ["Alpha", "Beta"]),
        ({"cf.seats.gte": "5.1"}, ["Beta"]),
        ({"cf.seats.lte": "12.5"}, ["Alpha", "Beta"]),
        ({"cf.seats.gte": "6", "cf.seats.lte": "100"}, ["Beta"]),
        ({"cf.renewal": "2026-01-31"}, ["Alpha"]),
        ({"cf.renewal.gte": "2026-02-01"}, ["Beta"]),
        ({"cf.renewal.lte": "2026-01-31"}, ["Alpha"]),
        ({"cf.signed_at": "2026-01-01T11:00:00Z"}, ["Beta"]),
        ({"cf.signed_at": "2026-01-01T12:00:00+01:00"}, ["Beta"]),
        ({"cf.signed_at.gte": "2026-01-01T10:30:00Z"}, ["Beta"]),
        ({"cf.signed_at.lte": "2026-01-01T10:00:00Z"}, ["Alpha"]),
        ({"cf.vip": "true"}, ["Alpha"]),
        ({"cf.vip": "false"}, ["Beta"]),
        ({"cf.tier": "apac"}, ["Beta"]),
        ({"cf.markets": "apac"}, ["Alpha", "Beta"]),
        ({"cf.markets": "emea"}, ["Alpha"]),
        ({"cf.markets": "amer"}, []),
        ({"cf.site": "https://alpha.example"}, ["Alpha"]),
        ({"cf.billing": "BILL@alpha.example"}, ["Alpha"]),
        ({"cf.manager": "me"}, ["Alpha"]),
        ({"cf.manager": "unassigned"}, ["Gamma"]),
        ({"cf.budget": "100"}, ["Alpha"]),
        ({"cf.budget.gte": "1000"}, ["Beta"]),
        ({"cf.budget.lte": "100.00"}, ["Alpha"]),
        ({"cf.code.empty": "true"}, ["Gamma"]),
        ({"cf.code.empty": "false"}, ["Alpha", "Beta"]),
        ({"cf[tier]": "emea"}, ["Alpha"]),
        ({"cf[seats.gte]": "10"}, ["Beta"]),
        ({"cf.tier": "emea", "role": "customer", "q": "alp"}, ["Alpha"]),
        ({"cf.tier": "emea", "role": "prospect"}, []),
    ],
)
def test_every_type_filters(api, world, params, expected):
    response = api.get("/companies", params)
    assert names(response) == expected
    assert response.json()["totalExact"] is True


def test_user_filter_takes_a_uuid(api, world):
    assert names(api.get("/companies", {"cf.manager": str(world["colleague"].pk)})) == ["Beta"]


@pytest.mark.parametrize(
    "params",
    [
        {"cf.nope": "x"},
        {"cf.seats": "many"},
        {"cf.seats": ""},
        {"cf.renewal": "31/01/2026"},
        {"cf.renewal.gte": "2026-13-01"},
        {"cf.signed_at": "2026-01-01"},
        {"cf.vip": "yes"},
        {"cf.tier": "mars"},
        {"cf.markets": "mars"},
        {"cf.manager": "someone"},
        {"cf.budget": "EUR 100"},
        {"cf.code.gte": "A"},
        {"cf.vip.lte": "true"},
        {"cf.code.empty": "maybe"},
        {"cf.code.between": "x"},
        {"cf.billing": "not-an-email"},
    ],
)
def test_unknown_keys_and_malformed_values_are_400_naming_the_parameter(api, world, params):
    body = assert_error(api.get("/companies", params), 400)
    assert list(body["details"]) == list(params)


def test_cursor_walk_keeps_the_custom_field_filter(api, entity):
    define(api, "tier", "select", options=OPTIONS)
    for index in range(7):
        api.post("/companies", {"name": f"C{index}", "customFields": {"tier": "emea" if index % 2 else "apac"}})
    seen, params = [], {"cf.tier": "emea", "pageSize": 2}
    while True:
        body = api.get("/companies", params).json()
        seen += [row["name"] for row in body["companies"]]
        if not body["nextCursor"]:
            break
        params = {"cf.tier": "emea", "pageSize": 2, "cursor": body["nextCursor"]}
    assert seen == ["C1", "C3", "C5"]
    # the cursor belongs to this filter: another value is refused
    first = api.get("/companies", {"cf.tier": "emea", "pageSize": 2}).json()
    assert_error(api.get("/companies", {"cf.tier": "apac", "pageSize": 2, "cursor": first["nextCursor"]}), 400)


def test_contacts_and_leads_filter_on_their_own_fields(api):
    define(api, "shoe", "number", object_type="contact")
    define(api, "deal_type", "select", object_type="lead", options=OPTIONS)
    api.post("/contacts", {"firstName": "Ada", "customFields": {"shoe": 38}})
    api.post("/contacts", {"firstName": "Bob", "customFields": {"shoe": 44}})
    api.post("/leads", {"title": "Big", "customFields": {"deal_type": "amer"}})
    api.post("/leads", {"title": "Small"})
    contacts = api.get("/contacts", {"cf.shoe.gte": "40"}).json()["contacts"]
    assert [c["firstName"] for c in contacts] == ["Bob"]
    leads = api.get("/leads", {"cf.deal_type": "amer"}).json()["leads"]
    assert [lead["title"] for lead in leads] == ["Big"]
    # a company field is unknown on contacts
    assert_error(api.get("/contacts", {"cf.deal_type": "amer"}), 400)


def test_another_entitys_definitions_are_unknown_keys(api, other_api):
    define(other_api, "secret", "text")
    assert_error(api.get("/companies", {"cf.secret": "x"}), 400)


def _statements(captured) -> list[str]:
    return [q["sql"] for q in captured if "SAVEPOINT" not in q["sql"]]


@pytest.mark.parametrize("count", [1, 30])
def test_list_query_count_does_not_grow_with_the_number_of_fields(api, count):
    for index in range(count):
        define(api, f"field_{index}", "text")
    for index in range(5):
        api.post("/companies", {"name": f"C{index}", "customFields": {"field_0": f"v{index}"}})
    api.get("/companies")  # the definitions reach the shared cache
    with CaptureQueriesContext(connection) as filtered:
        response = api.get("/companies", {"cf.field_0": "v1"})
    assert [row["name"] for row in response.json()["companies"]] == ["C1"]
    with CaptureQueriesContext(connection) as unfiltered:
        assert len(api.get("/companies").json()["companies"]) == 5
    # entity, key, page: as without custom fields; an equality filter may add one planning-only
    # EXPLAIN (index or ordered walk, see CustomFieldFilters._equal; its estimate is then cached)
    statements = _statements(filtered.captured_queries)
    assert len(statements) <= 4 and sum(sql.startswith("EXPLAIN") for sql in statements) <= 1, statements
    assert len(_statements(unfiltered.captured_queries)) <= 3, unfiltered.captured_queries


def test_a_common_value_is_found_by_walking_the_list_and_a_rare_one_through_the_index(api, monkeypatch):
    from crm import filters

    define(api, "tier", "select", options=OPTIONS)
    define(api, "markets", "multiselect", options=OPTIONS)
    for index in range(6):
        values = {"tier": "emea" if index % 3 else "apac", "markets": ["apac"]}
        api.post("/companies", {"name": f"C{index}", "customFields": values})
    expected = ["C1", "C2", "C4", "C5"]
    with CaptureQueriesContext(connection) as indexed:
        assert names(api.get("/companies", {"cf.tier": "emea"})) == expected
    assert any("@>" in q["sql"] for q in indexed.captured_queries)
    monkeypatch.setattr(filters, "COMMON_MATCHES", 0)  # as if PostgreSQL expected many matches
    with CaptureQueriesContext(connection) as walked:
        assert names(api.get("/companies", {"cf.tier": "emea"})) == expected
        assert names(api.get("/companies", {"cf.markets": "emea"})) == []
        assert len(names(api.get("/companies", {"cf.markets": "apac"}))) == 6
    page_sql = [q["sql"] for q in walked.captured_queries if '"crm_company"' in q["sql"] and "EXPLAIN" not in q["sql"]]
    assert page_sql and all("jsonb_contains" in sql and "@>" not in sql for sql in page_sql), page_sql


def test_a_value_the_statistics_put_far_over_the_cap_is_not_counted_when_it_filters_alone(api, monkeypatch):
    """A capped count of a common custom-field value reads the table until 10,001 matches; when
    the planner expects ten times the cap and the value is the list's only filter, the list
    answers the capped total without counting. With any other filter it counts as always."""
    from crm import filters

    define(api, "tier", "select", options=OPTIONS)
    for index in range(3):
        api.post("/companies", {"name": f"C{index}", "role": "customer", "customFields": {"tier": "emea"}})
    monkeypatch.setattr(filters, "_expected_matches", lambda definition, stored: 200_000.0)  # as at a million

    with CaptureQueriesContext(connection) as alone:
        body = api.get("/companies", {"cf.tier": "emea"}).json()
    assert (body["total"], body["totalExact"], len(body["companies"])) == (10_000, False, 3)
    page_sql = [q["sql"] for q in alone.captured_queries if '"crm_company"' in q["sql"]]
    assert page_sql and not any("COUNT(" in sql for sql in page_sql), page_sql

    with CaptureQueriesContext(connection) as combined:
        body = api.get("/companies", {"cf.tier": "emea", "role": "customer"}).json()
    assert (body["total"], body["totalExact"]) == (3, True)
    assert any("COUNT(" in q["sql"] for q in combined.captured_queries)

    monkeypatch.setattr(filters, "_expected_matches", lambda definition, stored: 50_000.0)  # common, not far over
    body = api.get("/companies", {"cf.tier": "emea"}).json()
    assert (body["total"], body["totalExact"]) == (3, True)
