"""`/api/crm/contacts` and `/api/crm/companies/{id}/contacts` over HTTP with real API keys (§3)."""

from __future__ import annotations

import threading
import uuid

import pytest
from django.db import connection

from crm.models import CompanyMembership, Contact
from tests import factories
from tests.helpers import assert_error

CONTACT_FIELDS = {
    "id",
    "firstName",
    "lastName",
    "fullName",
    "email",
    "phone",
    "title",
    "companyId",
    "ownerUserId",
    "linkedinUrl",
    "notes",
    "customFields",
    "createdAt",
    "updatedAt",
}


def _memberships(contact_id) -> list[tuple[str, bool]]:
    rows = CompanyMembership.objects.filter(contact_id=contact_id).order_by("company__name")
    return [(row.company.name, row.is_primary) for row in rows]


# --- create -------------------------------------------------------------------------------------


def test_create_contact_returns_201_with_the_whole_object(api):
    response = api.post("/contacts", {"firstName": " Ada ", "lastName": "Lovelace", "title": "Analyst"})

    assert response.status_code == 201, response.content
    contact = response.json()["contact"]
    assert set(contact) == CONTACT_FIELDS
    assert contact["firstName"] == "Ada"
    assert contact["fullName"] == "Ada Lovelace"
    assert contact["email"] is None
    assert contact["companyId"] is None
    assert contact["ownerUserId"] is None
    assert contact["createdAt"].endswith("Z")
    assert Contact.objects.for_entity(api.entity).filter(pk=contact["id"]).exists()


@pytest.mark.parametrize(
    "body",
    [{}, {"phone": "+1 555"}, {"firstName": "", "lastName": "  ", "email": ""}, {"email": None, "title": "CTO"}],
)
def test_create_contact_needs_a_first_name_last_name_or_email(api, body):
    body = assert_error(api.post("/contacts", body), 400)

    assert "firstName" in body["error"] and "email" in body["error"]
    assert not Contact.objects.for_entity(api.entity).exists()


@pytest.mark.parametrize("body", [{"lastName": "Only"}, {"email": "only@example.com"}])
def test_create_contact_accepts_any_one_identifying_field(api, body):
    assert api.post("/contacts", body).status_code == 201


def test_create_contact_lower_cases_and_trims_the_email(api):
    response = api.post("/contacts", {"email": "  Ada.Lovelace@Example.COM "})

    assert response.status_code == 201, response.content
    assert response.json()["contact"]["email"] == "ada.lovelace@example.com"


@pytest.mark.parametrize("email", ["not-an-email", "a@b", "ada@@example.com", 42])
def test_create_contact_rejects_an_invalid_email(api, email):
    body = assert_error(api.post("/contacts", {"firstName": "Ada", "email": email}), 400)

    assert "email" in body["details"]


def test_create_contact_with_a_used_email_is_409_with_the_existing_id(api):
    existing = factories.make_contact(api.entity, email="ada@example.com")

    body = assert_error(api.post("/contacts", {"firstName": "Ada", "email": "ADA@example.com"}), 409)

    assert body["existingId"] == str(existing.pk)
    assert Contact.objects.for_entity(api.entity).count() == 1


def test_the_same_email_may_exist_in_another_entity(api, other_entity):
    factories.make_contact(other_entity, email="ada@example.com")

    assert api.post("/contacts", {"email": "ada@example.com"}).status_code == 201


def test_blank_emails_do_not_conflict(api):
    assert api.post("/contacts", {"firstName": "A", "email": ""}).status_code == 201
    response = api.post("/contacts", {"firstName": "B", "email": ""})

    assert response.status_code == 201
    assert response.json()["contact"]["email"] is None


def test_create_contact_with_company_id_makes_it_the_primary_membership(api):
    company = factories.make_company(api.entity, name="Acme")

    response = api.post("/contacts", {"firstName": "Ada", "companyId": str(company.pk)})

    assert response.status_code == 201, response.content
    contact = response.json()["contact"]
    assert contact["companyId"] == str(company.pk)
    assert _memberships(contact["id"]) == [("Acme", True)]


@pytest.mark.parametrize("kind", ["foreign", "random", "malformed", "number"])
def test_create_contact_with_an_unknown_company_id_is_400_naming_the_field(api, other_entity, kind):
    company_id = {
        "foreign": lambda: str(factories.make_company(other_entity).pk),
        "random": lambda: str(uuid.uuid4()),
        "malformed": lambda: "not-a-uuid",
        "number": lambda: 7,
    }[kind]()

    body = assert_error(api.post("/contacts", {"firstName": "Ada", "companyId": company_id}), 400)

    assert "companyId" in body["details"]
    assert not Contact.objects.for_entity(api.entity).exists()


def test_owner_must_be_a_member_of_the_entity(api, other_user):
    member = factories.make_member(api.entity)

    ok = api.post("/contacts", {"firstName": "Ada", "ownerUserId": str(member.pk)})
    assert ok.status_code == 201
    assert ok.json()["contact"]["ownerUserId"] == str(member.pk)

    for owner in (str(other_user.pk), str(uuid.uuid4()), "me", 5):
        body = assert_error(api.post("/contacts", {"firstName": "Ada", "ownerUserId": owner}), 400)
        assert "ownerUserId" in body["details"]


def test_create_contact_rejects_a_nul_character_and_a_non_object_body(api):
    assert_error(api.post("/contacts", {"firstName": "A\u0000da"}), 400)
    assert_error(api.post("/contacts", ["firstName"]), 400)


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_creates_with_one_email_give_one_201_and_one_409(make_api):
    # One key per thread: requests sharing a key would queue behind its `last_used_at` row lock.
    clients = {name: make_api() for name in ("A", "B")}
    barrier = threading.Barrier(2)
    results: list = []

    def create(name):
        try:
            barrier.wait(timeout=10)
            response = clients[name].post("/contacts", {"firstName": name, "email": "race@example.com"})
            results.append((response.status_code, response.json()))
        finally:
            connection.close()

    threads = [threading.Thread(target=create, args=(name,)) for name in ("A", "B")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
        assert not thread.is_alive(), "a request thread is still running after 30 s"

    statuses = sorted(status for status, _ in results)
    assert statuses == [201, 409], results
    created = next(body for status, body in results if status == 201)
    conflict = next(body for status, body in results if status == 409)
    assert conflict["existingId"] == created["contact"]["id"]


# --- read ---------------------------------------------------------------------------------------


def test_get_contact_returns_it_with_the_primary_company(api):
    company = factories.make_company(api.entity)
    contact = factories.make_contact(api.entity, company=company, first_name="Ada", last_name="Lovelace")

    response = api.get(f"/contacts/{contact.pk}")

    assert response.status_code == 200
    body = response.json()["contact"]
    assert body["id"] == str(contact.pk)
    assert body["fullName"] == "Ada Lovelace"
    assert body["companyId"] == str(company.pk)


@pytest.mark.parametrize(
    "path", ["/contacts/not-a-uuid", "/companies/not-a-uuid/contacts", "/contacts/not-a-uuid/company-memberships"]
)
def test_a_malformed_id_is_a_4xx_envelope(api, path):
    response = api.get(path)

    assert response.status_code in (400, 404)
    assert_error(response, response.status_code)


# --- update -------------------------------------------------------------------------------------


def test_patch_changes_only_the_fields_sent(api):
    contact = factories.make_contact(api.entity, first_name="Ada", last_name="Lovelace", phone="123")

    response = api.patch(f"/contacts/{contact.pk}", {"title": "Countess", "email": "ADA@example.com"})

    assert response.status_code == 200, response.content
    body = response.json()["contact"]
    assert body["title"] == "Countess"
    assert body["email"] == "ada@example.com"
    assert body["phone"] == "123"
    assert body["fullName"] == "Ada Lovelace"


def test_patch_to_an_email_of_another_contact_is_409(api):
    taken = factories.make_contact(api.entity, email="taken@example.com")
    contact = factories.make_contact(api.entity, email="mine@example.com")

    body = assert_error(api.patch(f"/contacts/{contact.pk}", {"email": "Taken@example.com"}), 409)

    assert body["existingId"] == str(taken.pk)
    assert api.patch(f"/contacts/{contact.pk}", {"email": "MINE@example.com"}).status_code == 200


def test_patch_cannot_remove_every_identifying_field(api):
    contact = factories.make_contact(api.entity, first_name="Ada", last_name="", email=None)

    assert_error(api.patch(f"/contacts/{contact.pk}", {"firstName": ""}), 400)

    contact.refresh_from_db()
    assert contact.first_name == "Ada"


def test_patch_company_id_creates_a_new_primary_membership_and_demotes_the_old(api):
    old = factories.make_company(api.entity, name="Old")
    new = factories.make_company(api.entity, name="New")
    contact = factories.make_contact(api.entity, company=old)

    response = api.patch(f"/contacts/{contact.pk}", {"companyId": str(new.pk)})

    assert response.status_code == 200, response.content
    assert response.json()["contact"]["companyId"] == str(new.pk)
    assert _memberships(contact.pk) == [("New", True), ("Old", False)]


def test_patch_company_id_promotes_an_existing_membership(api):
    first = factories.make_company(api.entity, name="First")
    second = factories.make_company(api.entity, name="Second")
    contact = factories.make_contact(api.entity, company=first)
    membership = factories.make_membership(contact, second, title="Advisor", is_primary=False)

    response = api.patch(f"/contacts/{contact.pk}", {"companyId": str(second.pk)})

    assert response.status_code == 200
    assert response.json()["contact"]["companyId"] == str(second.pk)
    assert _memberships(contact.pk) == [("First", False), ("Second", True)]
    membership.refresh_from_db()
    assert membership.title == "Advisor"


def test_patch_company_id_null_clears_the_primary_flag_but_keeps_memberships(api):
    company = factories.make_company(api.entity, name="Acme")
    contact = factories.make_contact(api.entity, company=company)

    response = api.patch(f"/contacts/{contact.pk}", {"companyId": None})

    assert response.status_code == 200
    assert response.json()["contact"]["companyId"] is None
    assert _memberships(contact.pk) == [("Acme", False)]


def test_patch_company_id_to_the_current_company_changes_nothing(api):
    company = factories.make_company(api.entity, name="Acme")
    contact = factories.make_contact(api.entity, company=company)

    response = api.patch(f"/contacts/{contact.pk}", {"companyId": str(company.pk)})

    assert response.status_code == 200
    assert _memberships(contact.pk) == [("Acme", True)]


def test_patch_with_a_foreign_company_id_is_400_and_changes_nothing(api, other_entity):
    company = factories.make_company(api.entity, name="Acme")
    contact = factories.make_contact(api.entity, company=company, title="Before")
    foreign = factories.make_company(other_entity)

    body = assert_error(api.patch(f"/contacts/{contact.pk}", {"companyId": str(foreign.pk), "title": "After"}), 400)

    assert "companyId" in body["details"]
    contact.refresh_from_db()
    assert contact.title == "Before"
    assert _memberships(contact.pk) == [("Acme", True)]


def test_quick_successive_company_switches_keep_exactly_one_primary(api):
    companies = [factories.make_company(api.entity, name=f"C{i}") for i in range(3)]
    contact = factories.make_contact(api.entity, company=companies[0])

    for company in [companies[1], companies[2], companies[0], companies[2], companies[1]]:
        response = api.patch(f"/contacts/{contact.pk}", {"companyId": str(company.pk)})
        assert response.status_code == 200, response.content
        assert response.json()["contact"]["companyId"] == str(company.pk)

    assert _memberships(contact.pk) == [("C0", False), ("C1", True), ("C2", False)]


@pytest.mark.django_db(transaction=True)
def test_concurrent_company_switches_never_500_and_leave_one_primary(make_api):
    api = make_api()
    companies = [factories.make_company(api.entity, name=f"C{i}") for i in range(4)]
    contact = factories.make_contact(api.entity, company=companies[0])
    barrier = threading.Barrier(3)
    statuses: list[int] = []

    def switch(client, company):
        try:
            barrier.wait(timeout=10)
            statuses.append(client.patch(f"/contacts/{contact.pk}", {"companyId": str(company.pk)}).status_code)
        finally:
            connection.close()

    # One key per thread: requests sharing a key would queue behind its `last_used_at` row lock.
    threads = [threading.Thread(target=switch, args=(make_api(), company)) for company in companies[1:]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
        assert not thread.is_alive(), "a request thread is still running after 30 s"

    assert statuses == [200, 200, 200]
    memberships = CompanyMembership.objects.filter(contact=contact)
    assert memberships.count() == 4
    assert memberships.filter(is_primary=True).count() == 1


# --- delete -------------------------------------------------------------------------------------


def test_delete_contact_is_204_removes_memberships_and_keeps_leads_and_activities(api):
    company = factories.make_company(api.entity)
    contact = factories.make_contact(api.entity, company=company)
    lead = factories.make_lead(api.entity, company=company, contact=contact)
    activity = factories.make_activity(api.entity, contact=contact, lead=lead)

    response = api.delete(f"/contacts/{contact.pk}")

    assert response.status_code == 204
    assert response.content == b""
    assert not Contact.objects.filter(pk=contact.pk).exists()
    assert not CompanyMembership.objects.filter(contact_id=contact.pk).exists()
    lead.refresh_from_db()
    activity.refresh_from_db()
    assert lead.contact_id is None and lead.company_id == company.pk
    assert activity.contact_id is None and activity.lead_id == lead.pk
    assert_error(api.get(f"/contacts/{contact.pk}"), 404)
    assert_error(api.delete(f"/contacts/{contact.pk}"), 404)


# --- list ---------------------------------------------------------------------------------------


def _ids(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["contacts"]]


def test_list_is_ordered_by_last_name_first_name_id_and_paginated(api, other_entity):
    b = factories.make_contact(api.entity, first_name="Ada", last_name="Byron")
    a2 = factories.make_contact(api.entity, first_name="Zed", last_name="Adams")
    a1 = factories.make_contact(api.entity, first_name="Abe", last_name="Adams")
    factories.make_contact(other_entity, first_name="Hidden", last_name="Aaron")

    response = api.get("/contacts", {"pageSize": 2})

    body = response.json()
    assert _ids(response) == [str(a1.pk), str(a2.pk)]
    assert (body["page"], body["pageSize"], body["total"], body["hasMore"]) == (1, 2, 3, True)
    page2 = api.get("/contacts", {"pageSize": 2, "page": 2}).json()
    assert [row["id"] for row in page2["contacts"]] == [str(b.pk)]
    assert page2["hasMore"] is False


def test_list_shows_each_contacts_primary_company(api):
    acme = factories.make_company(api.entity, name="Acme")
    globex = factories.make_company(api.entity, name="Globex")
    with_primary = factories.make_contact(api.entity, company=acme, last_name="A")
    factories.make_membership(with_primary, globex)
    without = factories.make_contact(api.entity, last_name="B")
    factories.make_membership(without, globex, is_primary=False)

    rows = {row["id"]: row for row in api.get("/contacts").json()["contacts"]}

    assert rows[str(with_primary.pk)]["companyId"] == str(acme.pk)
    assert rows[str(without.pk)]["companyId"] is None


def test_filter_by_company_id_matches_any_membership(api, other_entity):
    acme = factories.make_company(api.entity)
    globex = factories.make_company(api.entity)
    primary = factories.make_contact(api.entity, company=acme, last_name="A")
    secondary = factories.make_contact(api.entity, company=globex, last_name="B")
    factories.make_membership(secondary, acme)
    factories.make_contact(api.entity, company=globex, last_name="C")

    assert _ids(api.get("/contacts", {"companyId": str(acme.pk)})) == [str(primary.pk), str(secondary.pk)]
    assert _ids(api.get("/contacts", {"companyId": str(uuid.uuid4())})) == []
    assert _ids(api.get("/contacts", {"companyId": str(factories.make_company(other_entity).pk)})) == []
    body = assert_error(api.get("/contacts", {"companyId": "nope"}), 400)
    assert "companyId" in body["error"]


def test_filter_q_matches_names_and_email_case_insensitively(api):
    ada = factories.make_contact(api.entity, first_name="Ada", last_name="Lovelace", email="countess@example.com")
    grace = factories.make_contact(api.entity, first_name="Grace", last_name="Hopper", email="grace@navy.mil")

    assert _ids(api.get("/contacts", {"q": "ADA"})) == [str(ada.pk)]
    assert _ids(api.get("/contacts", {"q": "hopp"})) == [str(grace.pk)]
    assert _ids(api.get("/contacts", {"q": "ada love"})) == [str(ada.pk)]
    assert _ids(api.get("/contacts", {"q": "NAVY.MIL"})) == [str(grace.pk)]
    assert _ids(api.get("/contacts", {"q": "nobody"})) == []


def test_filter_q_treats_percent_and_underscore_literally(api):
    literal = factories.make_contact(api.entity, first_name="100%_sure", last_name="X")
    factories.make_contact(api.entity, first_name="100 sure", last_name="Y")
    factories.make_contact(api.entity, first_name="Plain", last_name="Z", email="a_b@example.com")

    assert _ids(api.get("/contacts", {"q": "%"})) == [str(literal.pk)]
    assert _ids(api.get("/contacts", {"q": "0%_s"})) == [str(literal.pk)]
    assert len(_ids(api.get("/contacts", {"q": "_"}))) == 2


def test_filter_by_owner_accepts_uuid_me_and_unassigned(api):
    member = factories.make_member(api.entity)
    mine = factories.make_contact(api.entity, owner=api.user, last_name="A")
    theirs = factories.make_contact(api.entity, owner=member, last_name="B")
    nobodys = factories.make_contact(api.entity, last_name="C")

    assert _ids(api.get("/contacts", {"ownerUserId": "me"})) == [str(mine.pk)]
    assert _ids(api.get("/contacts", {"ownerUserId": str(member.pk)})) == [str(theirs.pk)]
    assert _ids(api.get("/contacts", {"ownerUserId": "unassigned"})) == [str(nobodys.pk)]
    assert _ids(api.get("/contacts", {"ownerUserId": str(uuid.uuid4())})) == []
    assert_error(api.get("/contacts", {"ownerUserId": "someone"}), 400)


def test_filter_by_email_is_exact_and_case_insensitive(api):
    ada = factories.make_contact(api.entity, email="ada@example.com")
    factories.make_contact(api.entity, email="ada@example.com.au")

    assert _ids(api.get("/contacts", {"email": "ADA@Example.com"})) == [str(ada.pk)]
    assert _ids(api.get("/contacts", {"email": "ada@"})) == []


# --- /companies/{id}/contacts -------------------------------------------------------------------


def test_company_contacts_lists_members_with_their_membership(api):
    acme = factories.make_company(api.entity, name="Acme")
    globex = factories.make_company(api.entity, name="Globex")
    primary = factories.make_contact(api.entity, company=acme, last_name="A")
    advisor = factories.make_contact(api.entity, company=globex, last_name="B")
    advisor_membership = factories.make_membership(advisor, acme, title="Advisor")
    factories.make_contact(api.entity, company=globex, last_name="C")

    response = api.get(f"/companies/{acme.pk}/contacts")

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"contacts", "page", "pageSize", "total", "totalExact", "hasMore", "nextCursor"}
    assert body["total"] == 2
    first, second = body["contacts"]
    assert first["id"] == str(primary.pk)
    assert set(first) == CONTACT_FIELDS | {"membership"}
    assert first["membership"]["isPrimary"] is True
    assert first["companyId"] == str(acme.pk)
    assert second["membership"] == {"id": str(advisor_membership.pk), "title": "Advisor", "isPrimary": False}
    assert second["companyId"] == str(globex.pk)
