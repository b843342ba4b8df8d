"""Staff who are not superusers work in the admin only on entities where they are admin or owner."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission

from axiomatic.models import Membership
from tests import factories


@pytest.fixture
def staff(scoped_staff):
    return scoped_staff


@pytest.fixture
def staff_client(scoped_staff_client):
    return scoped_staff_client


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


# --- people: who a staff user who is not a superuser may change -----------------------------------


@pytest.fixture
def owner_staff(staff, entity):
    Membership.objects.filter(user=staff, entity=entity).update(role=Membership.Role.OWNER)
    return staff


def _user_form(person, **changes) -> dict:
    data = {"email": person.email, "name": person.name, "is_active": "on" if person.is_active else ""}
    data.update({"memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0"})
    data.update(changes)
    return {key: value for key, value in data.items() if value != ""}


def test_an_owner_changes_a_user_who_belongs_only_to_their_entities(staff_client, owner_staff, entity):
    colleague = factories.make_member(entity, email="colleague@example.com")
    response = staff_client.post(
        f"/admin/axiomatic/user/{colleague.pk}/change/", _user_form(colleague, email="renamed@example.com")
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    colleague.refresh_from_db()
    assert colleague.email == "renamed@example.com"
    assert staff_client.get(f"/admin/axiomatic/user/{colleague.pk}/password/").status_code == 200


@pytest.mark.parametrize("who", ["member_elsewhere_too", "superuser", "other_entitys_owner_in_ours"])
def test_users_reaching_beyond_the_owned_entities_cannot_be_changed(
    who, staff_client, owner_staff, entity, other_entity
):
    person = factories.make_member(entity, email=f"{who}@example.com")
    if who == "member_elsewhere_too":
        Membership.objects.create(user=person, entity=other_entity, role=Membership.Role.MEMBER)
    elif who == "superuser":
        person.is_superuser = person.is_staff = True
        person.save(update_fields=["is_superuser", "is_staff"])
    else:
        Membership.objects.create(user=person, entity=other_entity, role=Membership.Role.OWNER)
    original_password = person.password

    # Readable (they are a member of an entity the staff user administers), never changeable.
    assert staff_client.get(f"/admin/axiomatic/user/{person.pk}/change/").status_code == 200
    response = staff_client.post(
        f"/admin/axiomatic/user/{person.pk}/change/", _user_form(person, email="taken@example.com", is_active="")
    )
    assert response.status_code == 403
    password_view = f"/admin/axiomatic/user/{person.pk}/password/"
    assert staff_client.get(password_view).status_code == 403
    staff_client.post(password_view, {"password1": "N3w-passw0rd!x", "password2": "N3w-passw0rd!x"})
    person.refresh_from_db()
    assert (person.email, person.is_active, person.password) == (f"{who}@example.com", True, original_password)


def test_an_admin_who_is_not_owner_changes_no_user(staff_client, staff, entity):
    colleague = factories.make_member(entity, email="colleague@example.com")
    assert staff_client.get(f"/admin/axiomatic/user/{colleague.pk}/password/").status_code == 403
    response = staff_client.post(f"/admin/axiomatic/user/{colleague.pk}/change/", _user_form(colleague, is_active=""))
    assert response.status_code == 403
    colleague.refresh_from_db()
    assert colleague.is_active


def test_a_user_only_in_another_entity_is_not_found(staff_client, owner_staff, other_user):
    for suffix in ("change/", "password/", "history/"):
        response = staff_client.get(f"/admin/axiomatic/user/{other_user.pk}/{suffix}")
        assert response.status_code in (302, 404), suffix
    assert other_user.email not in staff_client.get("/admin/axiomatic/user/").content.decode()


def test_staff_rights_permissions_and_groups_are_granted_by_superusers_only(staff_client, owner_staff, entity):
    colleague = factories.make_member(entity, email="colleague@example.com")
    permission = Permission.objects.first()
    response = staff_client.post(
        f"/admin/axiomatic/user/{colleague.pk}/change/",
        _user_form(colleague, is_staff="on", is_superuser="on", user_permissions=[permission.pk]),
    )
    assert response.status_code == 302
    colleague.refresh_from_db()
    assert (colleague.is_staff, colleague.is_superuser) == (False, False)
    assert not colleague.user_permissions.exists()


def test_the_last_owner_cannot_step_down_in_the_admin(staff_client, owner_staff, entity):
    Membership.objects.filter(entity=entity).exclude(user=owner_staff).update(role=Membership.Role.MEMBER)
    membership = Membership.objects.get(user=owner_staff, entity=entity)
    response = staff_client.post(f"/admin/axiomatic/membership/{membership.pk}/change/", {"role": "admin"})
    assert response.status_code == 200
    assert "at least one owner" in response.content.decode()
    membership.refresh_from_db()
    assert membership.role == "owner"
    response = staff_client.post(f"/admin/axiomatic/membership/{membership.pk}/delete/", {"post": "yes"})
    assert Membership.objects.filter(pk=membership.pk).exists()


def test_removing_a_member_in_the_admin_revokes_their_keys(staff_client, owner_staff, entity):
    colleague = factories.make_member(entity)
    issued = factories.make_key(entity, colleague)
    membership = Membership.objects.get(user=colleague, entity=entity)
    response = staff_client.post(f"/admin/axiomatic/membership/{membership.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    issued.api_key.refresh_from_db()
    assert issued.api_key.revoked_at is not None


# --- API keys: a staff user who is not a superuser issues keys only for themselves ---------------


def _key_form(entity, person) -> dict:
    return {
        "entity": str(entity.pk),
        "user": str(person.pk),
        "name": "Minted",
        "scopes": ["read:crm"],
        "expires_at_0": "",
        "expires_at_1": "",
    }


@pytest.mark.parametrize("target", ["other_entitys_owner", "a_colleague"])
def test_a_staff_user_cannot_mint_a_key_for_someone_else(
    target, staff_client, owner_staff, entity, other_entity, other_user
):
    from apikeys.models import ApiKey

    if target == "other_entitys_owner":
        form = _key_form(other_entity, other_user)
    else:
        form = _key_form(entity, factories.make_member(entity, role=Membership.Role.OWNER))
    response = staff_client.post("/admin/apikeys/apikey/add/", form)
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert not ApiKey.objects.filter(name="Minted").exists()


def test_a_staff_user_mints_a_key_for_themselves_in_their_entity(staff_client, staff, entity):
    from apikeys.models import ApiKey

    response = staff_client.post("/admin/apikeys/apikey/add/", _key_form(entity, staff))
    assert response.status_code == 200 and "API key issued" in response.content.decode()
    assert ApiKey.objects.get(name="Minted").user == staff


def test_a_second_membership_of_the_same_user_is_refused_in_the_admin(staff_client, owner_staff, entity):
    colleague = factories.make_member(entity, email="colleague@example.com")
    response = staff_client.post(
        "/admin/axiomatic/membership/add/", {"user": colleague.pk, "entity": entity.pk, "role": "admin"}
    )
    assert response.status_code == 200 and "already exists" in response.content.decode()
    assert Membership.objects.get(user=colleague, entity=entity).role == "member"
