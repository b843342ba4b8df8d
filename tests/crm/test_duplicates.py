"""Duplicate detection (§16): each reason with a positive and a near-miss case, scores, order,
pagination, dismissals, tenancy, and the keys' SQL twins agreeing with Python."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from crm.models import Company, CompanyDuplicate, Contact, ContactDuplicate
from crm.models import keys as K
from crm.services.duplicates import duplicates_rebuild
from tests import factories
from tests.helpers import assert_error

pytestmark = pytest.mark.django_db


def contact(api, **body) -> str:
    response = api.post("/contacts", body)
    assert response.status_code == 201, response.content
    return response.json()["contact"]["id"]


def company(api, **body) -> str:
    response = api.post("/companies", body)
    assert response.status_code == 201, response.content
    return response.json()["company"]["id"]


def pairs(api, kind: str, **params) -> list[dict]:
    response = api.get(f"/{kind}/duplicates", params)
    assert response.status_code == 200, response.content
    return response.json()["duplicates"]


def pair_of(api, kind: str, a: str, b: str) -> dict | None:
    return next((p for p in pairs(api, kind, pageSize=200) if set(p["ids"]) == {a, b}), None)


# --- contacts --------------------------------------------------------------------------------------


def test_same_name_same_company(api):
    acme = company(api, name="Acme")
    a = contact(api, firstName="Ada", lastName="Lovelace", companyId=acme)
    b = contact(api, firstName=" ada ", lastName="LOVELACE", companyId=acme)
    found = pair_of(api, "contacts", a, b)
    assert found["reasons"] == ["same_name_same_company"]
    assert 0 < found["score"] <= 1


def test_same_name_at_different_companies_is_no_duplicate(api):
    a = contact(api, firstName="Ada", lastName="Lovelace", companyId=company(api, name="Acme"))
    b = contact(api, firstName="Ada", lastName="Lovelace", companyId=company(api, name="Globex"))
    assert pair_of(api, "contacts", a, b) is None


def test_same_phone(api):
    a = contact(api, firstName="A", phone="+49 (30) 123-4567")
    b = contact(api, firstName="B", phone="49 30 1234567")
    assert pair_of(api, "contacts", a, b)["reasons"] == ["same_phone"]


def test_phone_differing_by_a_digit_or_too_short_is_no_duplicate(api):
    a = contact(api, firstName="A", phone="+49 30 1234567")
    b = contact(api, firstName="B", phone="+49 30 1234568")
    c = contact(api, firstName="C", phone="123")
    d = contact(api, firstName="D", phone="1-2-3")
    assert pair_of(api, "contacts", a, b) is None
    assert pair_of(api, "contacts", c, d) is None


def test_similar_gmail_address(api):
    a = contact(api, email="ada.lovelace+crm@gmail.com")
    b = contact(api, email="AdaLovelace@googlemail.com")
    assert pair_of(api, "contacts", a, b)["reasons"] == ["similar_email"]


def test_dots_and_tags_elsewhere_than_gmail_count(api):
    a = contact(api, email="ada.lovelace@example.com")
    b = contact(api, email="adalovelace@example.com")
    c = contact(api, email="ada+x@example.com")
    d = contact(api, email="ada@example.com")
    assert pair_of(api, "contacts", a, b) is None
    assert pair_of(api, "contacts", c, d) is None


def test_similar_name_at_the_same_company(api):
    acme = company(api, name="Acme")
    a = contact(api, firstName="Maximilian", lastName="Richardson", companyId=acme)
    b = contact(api, firstName="Maximillian", lastName="Richardson", companyId=acme)
    found = pair_of(api, "contacts", a, b)
    assert found["reasons"] == ["similar_name"]


def test_at_a_large_company_similar_names_are_found_by_the_task_queued_on_commit(
    api, monkeypatch, settings, django_capture_on_commit_callbacks
):
    """Beyond SIMILAR_AT_COMPANY_LIMIT people a write finds equal names itself (through the index)
    and leaves similar ones to the refresh task it queues on commit, which compares the contact
    with every colleague in one statement: nothing is missed, the request stays bounded."""
    from crm.services import duplicates

    settings.CELERY_TASK_ALWAYS_EAGER = True
    monkeypatch.setattr(duplicates, "SIMILAR_AT_COMPANY_LIMIT", 2)
    acme = company(api, name="Acme")
    contact(api, firstName="Someone", lastName="Else", companyId=acme)
    a = contact(api, firstName="Maximilian", lastName="Richardson", companyId=acme)
    with django_capture_on_commit_callbacks(execute=False) as queued:
        b = contact(api, firstName="Maximillian", lastName="Richardson", companyId=acme)  # the third person
    assert pair_of(api, "contacts", a, b) is None  # not in the write's own transaction
    c = contact(api, firstName="Maximilian", lastName="Richardson", companyId=acme)
    assert "same_name_same_company" in pair_of(api, "contacts", a, c)["reasons"]

    for callback in queued:
        callback()  # the refresh task (eager here), as the worker runs it after the commit
    assert pair_of(api, "contacts", a, b)["reasons"] == ["similar_name"]
    assert pair_of(api, "contacts", b, c)["reasons"] == ["similar_name"]
    assert "same_name_same_company" in pair_of(api, "contacts", a, c)["reasons"]


def test_the_set_based_refresh_finds_what_a_write_finds(api):
    """The refresh task's statement (every colleague, equal keys with the common-key rule) stores
    the same pairs, reasons and scores as the single write's path."""
    from crm.services.duplicates import _contacts_refresh_set_based

    acme = company(api, name="Acme")
    a = contact(api, firstName="Maximilian", lastName="Richardson", companyId=acme, phone="030 1234567")
    b = contact(api, firstName="Maximillian", lastName="Richardson", companyId=acme, phone="0301234567")
    c = contact(api, firstName="Ada", lastName="Lovelace", email="a.da+x@gmail.com")
    d = contact(api, firstName="Ada", lastName="Byron", email="ada@googlemail.com", companyId=acme)
    contact(api, firstName="Alexandra", lastName="Richardson", companyId=acme)  # not similar enough
    before = sorted((tuple(sorted(p["ids"])), tuple(p["reasons"]), p["score"]) for p in pairs(api, "contacts"))
    assert len(before) == 2
    ContactDuplicate.objects.all().delete()
    _contacts_refresh_set_based([a, b, c, d])
    after = sorted((tuple(sorted(p["ids"])), tuple(p["reasons"]), p["score"]) for p in pairs(api, "contacts"))
    assert after == before


def test_dissimilar_name_or_other_company_is_no_similar_name(api):
    acme = company(api, name="Acme")
    a = contact(api, firstName="Maximilian", lastName="Richardson", companyId=acme)
    b = contact(api, firstName="Alexandra", lastName="Richardson", companyId=acme)  # similarity < 0.8
    c = contact(api, firstName="Maximillian", lastName="Richardson", companyId=company(api, name="Other"))
    assert pair_of(api, "contacts", a, b) is None
    assert pair_of(api, "contacts", a, c) is None


def test_a_membership_added_later_finds_the_pair(api):
    acme = company(api, name="Acme")
    a = contact(api, firstName="Ada", lastName="Lovelace", companyId=acme)
    b = contact(api, firstName="Ada", lastName="Lovelace")
    assert pair_of(api, "contacts", a, b) is None
    assert api.post(f"/contacts/{b}/company-memberships", {"companyId": acme}).status_code == 201
    assert pair_of(api, "contacts", a, b)["reasons"] == ["same_name_same_company"]


def test_an_edit_that_removes_the_likeness_removes_the_pair(api):
    a = contact(api, firstName="A", phone="030 1234567")
    b = contact(api, firstName="B", phone="030-1234567")
    assert pair_of(api, "contacts", a, b)
    assert api.patch(f"/contacts/{b}", {"phone": "040 7654321"}).status_code == 200
    assert pair_of(api, "contacts", a, b) is None
    assert api.delete(f"/contacts/{a}").status_code == 204
    assert not ContactDuplicate.objects.filter(first_id=a).exists()


def test_several_reasons_score_higher_and_come_first(api):
    acme = company(api, name="Acme")
    a = contact(api, firstName="Ada", lastName="Lovelace", phone="0301234567", companyId=acme)
    b = contact(api, firstName="Ada", lastName="Lovelace", phone="030 1234567", companyId=acme)
    c = contact(api, firstName="X", phone="0401234567")
    d = contact(api, firstName="Y", phone="040 1234567")
    listed = pairs(api, "contacts")
    assert [set(p["ids"]) for p in listed] == [{a, b}, {c, d}]
    assert listed[0]["reasons"] == ["same_name_same_company", "same_phone"]
    assert listed[0]["score"] > listed[1]["score"]


def test_a_key_shared_by_too_many_records_means_nothing(api, entity, monkeypatch):
    monkeypatch.setattr("crm.services.duplicates.COMMON_KEY_LIMIT", 3)
    ids = [contact(api, firstName=f"P{n}", phone="0800 123456") for n in range(4)]
    found = {frozenset(p["ids"]) for p in pairs(api, "contacts")}
    assert frozenset(ids[-2:]) not in found  # the 4th finds 3 others: too common


# --- companies -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "first,second",
    [
        ("Acme, Inc.", "ACME"),
        ("Acme GmbH", "acme ltd"),
        ("Acme Holding B.V.", "Acme Holding BV"),
        ("Müller GmbH & Co. KG", "müller"),
    ],
)
def test_company_same_name(api, first, second):
    a, b = company(api, name=first), company(api, name=second)
    assert "same_name" in pair_of(api, "companies", a, b)["reasons"]


def test_company_names_differing_beyond_suffixes_are_not_the_same(api):
    a, b = company(api, name="Acme Inc"), company(api, name="Acme Labs Inc")
    found = pair_of(api, "companies", a, b)
    assert found is None or "same_name" not in found["reasons"]


def test_company_similar_name(api):
    a, b = company(api, name="Globex Corporation International"), company(api, name="Globex Corporations International")
    assert pair_of(api, "companies", a, b)["reasons"] == ["similar_name"]


def test_company_dissimilar_name(api):
    a, b = company(api, name="Globex Industries"), company(api, name="Globe Indoors")
    assert pair_of(api, "companies", a, b) is None


def test_company_same_phone_and_website_host(api):
    a = company(api, name="One", phone="+44 20 7946 0000", website="https://www.acme.example/about")
    b = company(api, name="Two", phone="020 7946 0001", domain="acme.example")
    found = pair_of(api, "companies", a, b)
    assert found["reasons"] == ["same_website_host"]
    c = company(api, name="Three", phone="(020) 7946-0001")
    assert pair_of(api, "companies", b, c)["reasons"] == ["same_phone"]
    d = company(api, name="Four", website="http://acme.example.org")
    assert pair_of(api, "companies", a, d) is None


# --- list, dismiss, tenancy --------------------------------------------------------------------------


def test_list_is_paginated_with_totals_and_cursor(api):
    for n in range(3):
        contact(api, firstName=f"A{n}", phone=f"0{n}0 1234567")
        contact(api, firstName=f"B{n}", phone=f"0{n}01234567")
    body = api.get("/contacts/duplicates", {"pageSize": 2}).json()
    assert body["total"] == 3 and body["totalExact"] and body["hasMore"] and len(body["duplicates"]) == 2
    rest = api.get("/contacts/duplicates", {"cursor": body["nextCursor"]}).json()
    assert len(rest["duplicates"]) == 1 and not rest["hasMore"]
    assert_error(api.get("/contacts/duplicates", {"pageSize": 0}), 400)


def test_list_query_count_does_not_grow(api):
    for n in range(5):
        contact(api, firstName=f"A{n}", phone=f"0{n}0 1234567")
        contact(api, firstName=f"B{n}", phone=f"0{n}01234567")
    with CaptureQueriesContext(connection) as few:
        api.get("/contacts/duplicates", {"pageSize": 1})
    with CaptureQueriesContext(connection) as many:
        api.get("/contacts/duplicates", {"pageSize": 50})
    assert len(many) == len(few)


def test_dismiss_is_remembered(api):
    a = contact(api, firstName="A", phone="030 1234567")
    b = contact(api, firstName="B", phone="0301234567")
    response = api.post("/contacts/duplicates/dismiss", {"ids": [b, a]})
    assert response.status_code == 200 and response.json() == {"ok": True}
    assert pair_of(api, "contacts", a, b) is None
    assert api.patch(f"/contacts/{a}", {"title": "CEO"}).status_code == 200  # found again on write: still dismissed
    assert pair_of(api, "contacts", a, b) is None
    assert api.post("/contacts/duplicates/dismiss", {"ids": [a, b]}).status_code == 200  # twice: harmless


def test_company_dismiss(api):
    a, b = company(api, name="Acme Inc"), company(api, name="ACME")
    assert api.post("/companies/duplicates/dismiss", {"ids": [a, b]}).status_code == 200
    assert api.patch(f"/companies/{b}", {"name": "Acme Ltd"}).status_code == 200
    assert pair_of(api, "companies", a, b) is None


def test_dismiss_refuses_bad_ids(api, other_api):
    a = contact(api, firstName="A")
    foreign = contact(other_api, firstName="F")
    assert_error(api.post("/contacts/duplicates/dismiss", {"ids": [a, a]}), 400)
    assert_error(api.post("/contacts/duplicates/dismiss", {"ids": [a]}), 400)
    assert_error(api.post("/contacts/duplicates/dismiss", {"ids": [a, foreign]}), 400)
    assert_error(api.post("/contacts/duplicates/dismiss", {"ids": [a, "nope"]}), 400)
    assert_error(api.post("/contacts/duplicates/dismiss", {"ids": [a, a], "extra": 1}), 400)


def test_other_entities_pairs_are_invisible(api, other_api):
    contact(other_api, firstName="A", phone="030 1234567")
    contact(other_api, firstName="B", phone="0301234567")
    contact(api, firstName="C", phone="030 1234567")
    assert pairs(api, "contacts") == []
    assert len(pairs(other_api, "contacts")) == 1


def test_duplicates_need_read_scope(make_api):
    key = make_api(scopes=("write:crm",))
    assert_error(key.get("/contacts/duplicates"), 403)
    reader = make_api(scopes=("read:crm",))
    assert_error(reader.post("/contacts/duplicates/dismiss", {"ids": []}), 403)


# --- keys --------------------------------------------------------------------------------------------

SAMPLES = [
    "",
    "  Ada   LOVELACE ",
    "ACME, Inc.",
    "Müller GmbH & Co. KG",
    "Inc",
    "a.b+tag@GMail.com",
    "x@googlemail.com",
    "Plain@Example.COM",
    "+49 (30) 123-4567",
    "12345",
    "https://user@WWW.Acme.example:8080/a?b",
    "acme.example",
    "localhost",
    "tab\there",
]


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="the SQL twins live in PostgreSQL")
def test_sql_keys_equal_python_keys(db):
    checks = [
        ("crm_dup_company_key(%s)", K.company_name_key),
        ("crm_dup_phone_key(%s)", K.phone_key),
        ("crm_dup_email_key(%s)", K.email_key),
        ("crm_dup_host_key(%s, NULL)", K.website_host),
        ("crm_dup_person_key(%s, 'X')", lambda v: K.person_name_key(v, "X")),
    ]
    with connection.cursor() as cursor:
        for sql, python in checks:
            for value in SAMPLES:
                cursor.execute(f"SELECT {sql}", [value])
                assert cursor.fetchone()[0] == python(value), (sql, value)


def test_keys_are_kept_on_every_write(api, entity):
    a = company(api, name="Acme, Inc.", website="https://www.acme.example")
    assert Company.objects.filter(pk=a).values_list("name_key", "website_host").get() == ("acme", "acme.example")
    Company.objects.filter(pk=a).update(name="Globex Ltd")  # a bulk UPDATE (PostgreSQL's trigger)
    if connection.vendor == "postgresql":
        assert Company.objects.get(pk=a).name_key == "globex"
    c = contact(api, firstName="Ada", email="A.B+x@gmail.com")
    assert Contact.objects.get(pk=c).email_key == "ab@gmail.com"
    CompanyDuplicate.objects.all()  # the table exists


# --- rebuild ------------------------------------------------------------------------------------------


def test_rebuild_finds_pairs_written_around_the_services(api, entity):
    """Rows written directly (as COPY does) have no pairs until the rebuild, which finds the same
    pairs a write would and keeps dismissals."""
    acme = factories.make_company(entity, name="Acme Inc")
    factories.make_company(entity, name="ACME", phone="030 123456")
    factories.make_company(entity, name="Other", phone="030-123456")
    a = factories.make_contact(entity, first_name="Ada", last_name="Lovelace", company=acme)
    b = factories.make_contact(entity, first_name="Ada", last_name="Lovelace", company=acme)
    c = factories.make_contact(entity, email="x.y+z@gmail.com")
    d = factories.make_contact(entity, email="xy@gmail.com")
    assert pairs(api, "contacts") == []
    assert api.post("/contacts/duplicates/dismiss", {"ids": [str(c.pk), str(d.pk)]}).status_code == 200
    counts = duplicates_rebuild(entity=entity)
    assert counts == {"contact": 1, "company": 2}
    assert pair_of(api, "contacts", str(a.pk), str(b.pk))["reasons"] == ["same_name_same_company"]
    assert pair_of(api, "contacts", str(c.pk), str(d.pk)) is None
    assert api.get("/companies/duplicates").json()["total"] == 2
