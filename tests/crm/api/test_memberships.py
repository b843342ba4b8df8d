"""`/api/crm/contacts/{id}/company-memberships` over HTTP with real API keys, and the
primary switch in the admin."""

from __future__ import annotations

import threading
import uuid

import pytest
from django.db import connection

from crm.models import CompanyMembership, Contact
from tests import factories
from tests.helpers import assert_error

MEMBERSHIP_FIELDS = {
    "id",
    "contactId",
    "companyId",
    "companyName",
    "title",
    "isPrimary",
    "startDate",
    "endDate",
    "createdAt",
}


@pytest.fixture
def contact(api):
    return factories.make_contact(api.entity, first_name="Ada", last_name="Lovelace")


def _url(contact, membership=None) -> str:
    base = f"/contacts/{getattr(contact, 'pk', contact)}/company-memberships"
    return base if membership is None else f"{base}/{getattr(membership, 'pk', membership)}"


def _primaries(contact) -> list[str]:
    return [m.company.name for m in CompanyMembership.objects.filter(contact=contact, is_primary=True).select_related()]


# --- list ---------------------------------------------------------------------------------------


def test_list_returns_every_membership_unpaginated_primary_first(api, contact):
    acme = factories.make_company(api.entity, name="Acme")
    globex = factories.make_company(api.entity, name="Globex")
    other = factories.make_membership(contact, globex, title="Advisor")
    primary = factories.make_membership(contact, acme, title="CTO", is_primary=True)
    factories.make_contact(api.entity, company=acme)  # someone else's membership

    response = api.get(_url(contact))

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"memberships"}
    assert [row["id"] for row in body["memberships"]] == [str(primary.pk), str(other.pk)]
    first = body["memberships"][0]
    assert set(first) == MEMBERSHIP_FIELDS
    assert first == {
        "id": str(primary.pk),
        "contactId": str(contact.pk),
        "companyId": str(acme.pk),
        "companyName": "Acme",
        "title": "CTO",
        "isPrimary": True,
        "startDate": None,
        "endDate": None,
        "createdAt": first["createdAt"],
    }
    assert first["createdAt"].endswith("Z")


def test_list_of_a_contact_without_memberships_is_empty(api, contact):
    assert api.get(_url(contact)).json() == {"memberships": []}


def test_unknown_contact_is_404_even_with_an_invalid_body(api):
    assert_error(api.post(_url(uuid.uuid4()), {"companyId": "nope", "bogus": 1}), 404)


# --- create -------------------------------------------------------------------------------------


def test_first_membership_becomes_primary_and_sets_the_contacts_company(api, contact):
    acme = factories.make_company(api.entity, name="Acme")

    response = api.post(
        _url(contact), {"companyId": str(acme.pk), "title": "CTO", "startDate": "2024-01-31", "endDate": None}
    )

    assert response.status_code == 201, response.content
    membership = response.json()["membership"]
    assert set(membership) == MEMBERSHIP_FIELDS
    assert membership["isPrimary"] is True
    assert membership["companyName"] == "Acme"
    assert membership["contactId"] == str(contact.pk)
    assert membership["startDate"] == "2024-01-31"
    assert api.get(f"/contacts/{contact.pk}").json()["contact"]["companyId"] == str(acme.pk)


def test_later_memberships_are_not_primary_unless_asked(api, contact):
    acme, globex, initech = (factories.make_company(api.entity, name=n) for n in ("Acme", "Globex", "Initech"))
    api.post(_url(contact), {"companyId": str(acme.pk)})

    second = api.post(_url(contact), {"companyId": str(globex.pk)})
    assert second.status_code == 201
    assert second.json()["membership"]["isPrimary"] is False
    assert _primaries(contact) == ["Acme"]

    third = api.post(_url(contact), {"companyId": str(initech.pk), "isPrimary": True})
    assert third.status_code == 201
    assert third.json()["membership"]["isPrimary"] is True
    assert _primaries(contact) == ["Initech"]
    assert api.get(f"/contacts/{contact.pk}").json()["contact"]["companyId"] == str(initech.pk)


def test_explicit_is_primary_false_is_honoured_for_the_first_membership(api, contact):
    acme = factories.make_company(api.entity)

    response = api.post(_url(contact), {"companyId": str(acme.pk), "isPrimary": False})

    assert response.status_code == 201
    assert response.json()["membership"]["isPrimary"] is False
    assert api.get(f"/contacts/{contact.pk}").json()["contact"]["companyId"] is None


def test_the_same_company_twice_is_409_with_the_existing_membership(api, contact):
    acme = factories.make_company(api.entity)
    first = api.post(_url(contact), {"companyId": str(acme.pk)}).json()["membership"]

    body = assert_error(api.post(_url(contact), {"companyId": str(acme.pk), "isPrimary": True}), 409)

    assert body["existingId"] == first["id"]
    assert CompanyMembership.objects.filter(contact=contact).count() == 1


def test_another_contact_may_join_the_same_company(api, contact):
    acme = factories.make_company(api.entity)
    other = factories.make_contact(api.entity, company=acme)

    response = api.post(_url(contact), {"companyId": str(acme.pk)})

    assert response.status_code == 201
    assert response.json()["membership"]["isPrimary"] is True
    assert _primaries(other) == [acme.name]


@pytest.mark.parametrize("kind", ["foreign", "random", "malformed", "missing", "null"])
def test_create_with_an_unknown_or_missing_company_is_400_naming_the_field(api, contact, other_entity, kind):
    body = {
        "foreign": lambda: {"companyId": str(factories.make_company(other_entity).pk)},
        "random": lambda: {"companyId": str(uuid.uuid4())},
        "malformed": lambda: {"companyId": "acme"},
        "missing": lambda: {"title": "CTO"},
        "null": lambda: {"companyId": None},
    }[kind]()

    error = assert_error(api.post(_url(contact), body), 400)

    assert "companyId" in error["details"]
    assert not CompanyMembership.objects.filter(contact=contact).exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"startDate": "2024-02-01", "endDate": "2024-01-01"}, "endDate"),
        ({"startDate": "yesterday"}, "startDate"),
        ({"isPrimary": "maybe"}, "isPrimary"),
        ({"title": "x" * 201}, "title"),
    ],
)
def test_create_rejects_invalid_input(api, contact, body, field):
    acme = factories.make_company(api.entity)

    error = assert_error(api.post(_url(contact), {"companyId": str(acme.pk), **body}), 400)

    assert field in error["details"]


# --- update -------------------------------------------------------------------------------------


def test_patch_changes_only_the_fields_sent(api, contact):
    acme = factories.make_company(api.entity, name="Acme")
    membership = factories.make_membership(contact, acme, title="CTO", is_primary=True)

    response = api.patch(_url(contact, membership), {"title": "CEO", "endDate": "2030-12-31"})

    assert response.status_code == 200, response.content
    body = response.json()["membership"]
    assert (body["title"], body["endDate"], body["isPrimary"], body["companyId"]) == (
        "CEO",
        "2030-12-31",
        True,
        str(acme.pk),
    )


def test_patch_is_primary_true_demotes_the_old_primary(api, contact):
    acme = factories.make_company(api.entity, name="Acme")
    globex = factories.make_company(api.entity, name="Globex")
    factories.make_membership(contact, acme, is_primary=True)
    second = factories.make_membership(contact, globex)

    response = api.patch(_url(contact, second), {"isPrimary": True})

    assert response.status_code == 200
    assert response.json()["membership"]["isPrimary"] is True
    assert _primaries(contact) == ["Globex"]
    assert api.get(f"/contacts/{contact.pk}").json()["contact"]["companyId"] == str(globex.pk)
    assert [row["isPrimary"] for row in api.get(_url(contact)).json()["memberships"]] == [True, False]


def test_patch_is_primary_false_leaves_the_contact_without_a_primary_company(api, contact):
    membership = factories.make_membership(contact, factories.make_company(api.entity), is_primary=True)

    response = api.patch(_url(contact, membership), {"isPrimary": False})

    assert response.status_code == 200
    assert _primaries(contact) == []
    assert api.get(f"/contacts/{contact.pk}").json()["contact"]["companyId"] is None


def test_patch_to_a_company_the_contact_already_has_is_409(api, contact):
    acme = factories.make_company(api.entity)
    globex = factories.make_company(api.entity)
    at_acme = factories.make_membership(contact, acme, is_primary=True)
    at_globex = factories.make_membership(contact, globex)

    body = assert_error(api.patch(_url(contact, at_globex), {"companyId": str(acme.pk)}), 409)

    assert body["existingId"] == str(at_acme.pk)
    moved = api.patch(_url(contact, at_globex), {"companyId": str(factories.make_company(api.entity).pk)})
    assert moved.status_code == 200


def test_patch_with_a_foreign_company_is_400(api, contact, other_entity):
    membership = factories.make_membership(contact, factories.make_company(api.entity), is_primary=True)

    body = assert_error(
        api.patch(_url(contact, membership), {"companyId": str(factories.make_company(other_entity).pk)}), 400
    )

    assert "companyId" in body["details"]


def test_patch_end_date_before_the_stored_start_date_is_400(api, contact):
    membership = factories.make_membership(
        contact, factories.make_company(api.entity), start_date="2024-06-01", is_primary=True
    )

    body = assert_error(api.patch(_url(contact, membership), {"endDate": "2024-05-31"}), 400)

    assert "endDate" in body["details"]


def test_a_membership_of_another_contact_is_404(api, contact, other_entity):
    other = factories.make_contact(api.entity)
    theirs = factories.make_membership(other, factories.make_company(api.entity), is_primary=True)

    random_body = assert_error(api.patch(_url(contact, uuid.uuid4()), {"title": "X"}), 404)
    assert assert_error(api.patch(_url(contact, theirs), {"title": "X"}), 404) == random_body
    assert assert_error(api.delete(_url(contact, theirs)), 404) == random_body
    assert assert_error(api.get(_url(contact, theirs)), 404) == random_body
    theirs.refresh_from_db()
    assert theirs.title == ""


def test_quick_successive_primary_switches_keep_one_primary(api, contact):
    companies = [factories.make_company(api.entity, name=f"C{i}") for i in range(3)]
    memberships = [api.post(_url(contact), {"companyId": str(c.pk)}).json()["membership"] for c in companies]

    for index in (1, 2, 0, 2, 1, 1):
        response = api.patch(_url(contact, memberships[index]["id"]), {"isPrimary": True})
        assert response.status_code == 200, response.content
        assert _primaries(contact) == [f"C{index}"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_primary_switches_never_500_and_leave_one_primary(make_api):
    api = make_api()
    contact = factories.make_contact(api.entity)
    memberships = [
        factories.make_membership(contact, factories.make_company(api.entity), is_primary=(i == 0)) for i in range(6)
    ]
    workers = 5
    statuses: list[int] = []

    for _ in range(2):
        barrier = threading.Barrier(workers)

        def promote(client, membership):
            try:
                barrier.wait(timeout=10)  # noqa: B023 (each round waits on its own barrier)
                statuses.append(client.patch(_url(contact, membership), {"isPrimary": True}).status_code)
            finally:
                connection.close()

        # One key per thread: requests sharing a key would queue behind its `last_used_at` row lock.
        threads = [threading.Thread(target=promote, args=(make_api(), m)) for m in memberships[1:]]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
            assert not thread.is_alive(), "a request thread is still running after 30 s"

    assert statuses == [200] * (workers * 2)
    assert CompanyMembership.objects.filter(contact=contact, is_primary=True).count() == 1


# --- delete -------------------------------------------------------------------------------------


def test_delete_membership_answers_ok_and_keeps_the_others(api, contact):
    acme = factories.make_company(api.entity)
    globex = factories.make_company(api.entity)
    primary = factories.make_membership(contact, acme, is_primary=True)
    other = factories.make_membership(contact, globex)

    response = api.delete(_url(contact, other))

    assert response.status_code == 200
    assert response.json() == {"ok": True}
    assert list(CompanyMembership.objects.filter(contact=contact)) == [primary]
    assert_error(api.delete(_url(contact, other)), 404)


def test_deleting_the_primary_membership_promotes_no_other(api, contact):
    primary = factories.make_membership(contact, factories.make_company(api.entity), is_primary=True)
    factories.make_membership(contact, factories.make_company(api.entity))

    assert api.delete(_url(contact, primary)).status_code == 200

    assert _primaries(contact) == []
    assert api.get(f"/contacts/{contact.pk}").json()["contact"]["companyId"] is None
    # The next membership added becomes primary again.
    added = api.post(_url(contact), {"companyId": str(factories.make_company(api.entity).pk)})
    assert added.json()["membership"]["isPrimary"] is True


def test_deleting_a_membership_leaves_the_contact_and_company(api, contact):
    acme = factories.make_company(api.entity)
    membership = factories.make_membership(contact, acme, is_primary=True)

    api.delete(_url(contact, membership))

    assert Contact.objects.filter(pk=contact.pk).exists()
    assert api.get(f"/companies/{acme.pk}").status_code == 200


# --- bodies -------------------------------------------------------------------------------------


def test_membership_bodies_must_be_json_objects(api, contact):
    assert_error(api.post(_url(contact), ["companyId"]), 400)
    response = api.post(_url(contact), raw="companyId=1", content_type="application/x-www-form-urlencoded")
    assert_error(response, 415)


# --- admin --------------------------------------------------------------------------------------


def _inline_data(contact, rows, *, initial: int) -> dict:
    """POST data of the contact change form with its membership inline."""
    data = {
        "entity": str(contact.entity_id),
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "email": contact.email or "",
        "phone": "",
        "title": "",
        "owner": "",
        "linkedin_url": "",
        "notes": "",
        "memberships-TOTAL_FORMS": str(len(rows)),
        "memberships-INITIAL_FORMS": str(initial),
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
    }
    for index, row in enumerate(rows):
        prefix = f"memberships-{index}-"
        data[prefix + "contact"] = str(contact.pk)
        data[prefix + "id"] = str(row["id"]) if row.get("id") else ""
        data[prefix + "company"] = str(row["company"].pk)
        data[prefix + "title"] = row.get("title", "")
        data[prefix + "start_date"] = ""
        data[prefix + "end_date"] = ""
        if row.get("is_primary"):
            data[prefix + "is_primary"] = "on"
        if row.get("DELETE"):
            data[prefix + "DELETE"] = "on"
    return data


def test_admin_inline_switches_the_primary_company_in_one_submit(admin_client, entity):
    acme = factories.make_company(entity, name="Acme")
    globex = factories.make_company(entity, name="Globex")
    contact = factories.make_contact(entity, company=acme)
    at_acme = CompanyMembership.objects.get(contact=contact)
    at_globex = factories.make_membership(contact, globex)
    url = f"/admin/crm/contact/{contact.pk}/change/"
    assert admin_client.get(url).status_code == 200

    # Globex is saved after Acme in the form order, and before it in the primary switch.
    rows = [
        {"id": at_globex.pk, "company": globex, "is_primary": True},
        {"id": at_acme.pk, "company": acme, "is_primary": False},
    ]
    response = admin_client.post(url, _inline_data(contact, rows, initial=2))

    assert response.status_code == 302, response.content[:2000]
    assert _primaries(contact) == ["Globex"]


def test_admin_inline_adds_a_membership_in_the_contacts_entity(admin_client, entity):
    acme = factories.make_company(entity, name="Acme")
    contact = factories.make_contact(entity)

    response = admin_client.post(
        f"/admin/crm/contact/{contact.pk}/change/",
        _inline_data(contact, [{"company": acme, "is_primary": True, "title": "CTO"}], initial=0),
    )

    assert response.status_code == 302, response.content[:2000]
    membership = CompanyMembership.objects.get(contact=contact)
    assert (membership.entity_id, membership.is_primary, membership.title) == (entity.pk, True, "CTO")


def test_admin_inline_refuses_two_primaries_and_foreign_companies_without_500(admin_client, entity, other_entity):
    acme = factories.make_company(entity, name="Acme")
    globex = factories.make_company(entity, name="Globex")
    foreign = factories.make_company(other_entity, name="Foreign")
    contact = factories.make_contact(entity, company=acme)
    at_acme = CompanyMembership.objects.get(contact=contact)
    url = f"/admin/crm/contact/{contact.pk}/change/"

    two_primaries = [
        {"id": at_acme.pk, "company": acme, "is_primary": True},
        {"company": globex, "is_primary": True},
    ]
    response = admin_client.post(url, _inline_data(contact, two_primaries, initial=1))
    assert response.status_code == 200
    assert b"only one primary" in response.content

    foreign_row = [{"id": at_acme.pk, "company": acme, "is_primary": True}, {"company": foreign}]
    response = admin_client.post(url, _inline_data(contact, foreign_row, initial=1))
    assert response.status_code == 200
    assert b"No company with that id exists in this entity" in response.content  # the service's message
    assert list(CompanyMembership.objects.filter(contact=contact)) == [at_acme]


def test_admin_membership_page_promotes_through_the_service(admin_client, entity):
    acme = factories.make_company(entity, name="Acme")
    globex = factories.make_company(entity, name="Globex")
    contact = factories.make_contact(entity, company=acme)
    at_globex = factories.make_membership(contact, globex, title="Advisor")
    url = f"/admin/crm/companymembership/{at_globex.pk}/change/"
    assert admin_client.get(url).status_code == 200

    data = {"company": str(globex.pk), "title": "Advisor", "make_primary": "on", "start_date": "", "end_date": ""}
    response = admin_client.post(url, data)

    assert response.status_code == 302, response.content[:2000]
    assert _primaries(contact) == ["Globex"]


def test_admin_membership_add_page_applies_the_rules(admin_client, entity):
    acme = factories.make_company(entity, name="Acme")
    globex = factories.make_company(entity, name="Globex")
    contact = factories.make_contact(entity)
    url = "/admin/crm/companymembership/add/"
    assert admin_client.get(url).status_code == 200
    base = {"contact": str(contact.pk), "title": "", "start_date": "", "end_date": ""}

    assert admin_client.post(url, {**base, "company": str(acme.pk)}).status_code == 302
    assert admin_client.post(url, {**base, "company": str(globex.pk), "make_primary": "on"}).status_code == 302
    assert _primaries(contact) == ["Globex"]
    assert CompanyMembership.objects.get(company=acme).entity_id == entity.pk

    duplicate = admin_client.post(url, {**base, "company": str(acme.pk)})
    assert duplicate.status_code == 200
    assert CompanyMembership.objects.filter(contact=contact).count() == 2


def test_admin_contact_add_page_creates_the_contact_with_a_primary_membership(admin_client, entity):
    acme = factories.make_company(entity, name="Acme")
    unsaved = Contact(entity=entity, first_name="Ada", last_name="Lovelace", email="ADA@Example.com")
    data = _inline_data(unsaved, [{"company": acme, "is_primary": True}], initial=0)
    data["memberships-0-contact"] = ""
    assert admin_client.get("/admin/crm/contact/add/").status_code == 200

    response = admin_client.post("/admin/crm/contact/add/", data)

    assert response.status_code == 302, response.content[:2000]
    contact = Contact.objects.get(first_name="Ada")
    assert contact.email == "ada@example.com"
    assert _primaries(contact) == ["Acme"]
    duplicate = admin_client.post("/admin/crm/contact/add/", {**data, "email": "Ada@EXAMPLE.com"})
    assert duplicate.status_code == 200
    assert Contact.objects.filter(entity=entity).count() == 1


def test_admin_contact_and_membership_lists_load(admin_client, entity):
    factories.make_contact(entity, company=factories.make_company(entity))

    assert admin_client.get("/admin/crm/contact/").status_code == 200
    assert admin_client.get("/admin/crm/companymembership/").status_code == 200
    assert admin_client.get("/admin/crm/contact/?q=First").status_code == 200
