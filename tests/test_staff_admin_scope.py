"""Staff who are not superusers work in the admin only on entities where they are admin or owner."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from axiomatic.models import Membership
from tests import factories


@pytest.fixture
def staff(entity, other_entity):
    """Staff with every model permission, admin of `entity`, a mere member of `other_entity`."""
    person = factories.make_user(name="Stef Staff")
    person.is_staff = True
    person.save(update_fields=["is_staff"])
    person.user_permissions.set(Permission.objects.all())
    Membership.objects.create(user=person, entity=entity, role=Membership.Role.ADMIN)
    Membership.objects.create(user=person, entity=other_entity, role=Membership.Role.MEMBER)
    return person


@pytest.fixture
def staff_client(staff):
    client = Client()
    client.force_login(staff)
    return client


def test_change_lists_show_only_administered_entities(staff_client, entity, other_entity):
    factories.make_company(entity, name="Ours Ltd")
    factories.make_company(other_entity, name="Theirs Ltd")
    page = staff_client.get("/admin/crm/company/").content.decode()
    assert "Ours Ltd" in page and "Theirs Ltd" not in page
    entities = staff_client.get("/admin/axiomatic/entity/").content.decode()
    assert entity.name in entities and other_entity.name not in entities


def test_another_entitys_row_cannot_be_opened_or_changed(staff_client, other_entity):
    theirs = factories.make_company(other_entity, name="Theirs Ltd")
    response = staff_client.get(f"/admin/crm/company/{theirs.pk}/change/")
    assert response.status_code == 302  # the admin's "does not exist" redirect
    staff_client.post(f"/admin/crm/company/{theirs.pk}/change/", {"name": "Taken over"})
    theirs.refresh_from_db()
    assert theirs.name == "Theirs Ltd"


def test_relation_choices_are_limited_to_administered_entities(staff_client, entity, other_entity):
    form = staff_client.get("/admin/crm/company/add/").context["adminform"].form
    assert set(form.fields["entity"].queryset) == {entity}
    foreign_company = factories.make_company(other_entity)
    response = staff_client.post("/admin/crm/company/add/", {"entity": other_entity.pk, "name": "Sneaky"})
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    assert foreign_company.entity_id == other_entity.pk


def test_autocomplete_offers_only_administered_rows(staff_client, entity, other_entity):
    factories.make_company(entity, name="Acme Ours")
    factories.make_company(other_entity, name="Acme Theirs")
    response = staff_client.get(
        "/admin/autocomplete/",
        {"app_label": "crm", "model_name": "lead", "field_name": "company", "term": "Acme"},
    )
    names = {row["text"] for row in response.json()["results"]}
    assert names == {"Acme Ours"}


def test_an_admin_who_is_not_owner_cannot_change_roles(staff_client, staff, entity):
    colleague = factories.make_member(entity)
    membership = Membership.objects.get(user=colleague, entity=entity)
    staff_client.post(
        f"/admin/axiomatic/membership/{membership.pk}/change/",
        {"user": colleague.pk, "entity": entity.pk, "role": "owner"},
    )
    membership.refresh_from_db()
    assert membership.role == "member"
    Membership.objects.filter(user=staff, entity=entity).update(role=Membership.Role.OWNER)
    response = staff_client.post(
        f"/admin/axiomatic/membership/{membership.pk}/change/",
        {"user": colleague.pk, "entity": entity.pk, "role": "admin"},
    )
    assert response.status_code == 302
    membership.refresh_from_db()
    assert membership.role == "admin"


def test_superusers_see_every_entity(admin_client, entity, other_entity):
    factories.make_company(entity, name="Ours Ltd")
    factories.make_company(other_entity, name="Theirs Ltd")
    page = admin_client.get("/admin/crm/company/").content.decode()
    assert "Ours Ltd" in page and "Theirs Ltd" in page


def test_the_admin_sign_in_page_answers_before_anyone_signed_in(client, db):
    assert client.get("/admin/login/").status_code == 200
    assert client.get("/admin/").status_code == 302
