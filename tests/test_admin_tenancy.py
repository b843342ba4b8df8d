"""The admin cannot move a row to another entity or join rows of two entities."""

from __future__ import annotations

from crm.models import Contact
from crm.services.contacts import contact_create, contact_update
from marketing.models import MarketingListMember
from tests import factories


def test_a_saved_companys_entity_cannot_be_changed_in_the_admin(staff_client, entity, other_entity):
    company = factories.make_company(entity, name="Stays Put")
    response = staff_client.post(
        f"/admin/crm/company/{company.pk}/change/",
        {"entity": other_entity.pk, "name": "Stays Put", "role": "prospect", "status": "active"},
    )
    assert response.status_code == 302, response.content[:2000]
    company.refresh_from_db()
    assert company.entity_id == entity.pk
    page = staff_client.get(f"/admin/crm/company/{company.pk}/change/").content.decode()
    assert 'name="entity"' not in page


def test_a_list_member_joining_two_entities_is_refused(staff_client, entity, other_entity):
    marketing_list = factories.make_list(entity, "Newsletter")
    foreign_contact = factories.make_contact(other_entity, email="x@example.com")
    response = staff_client.post(
        "/admin/marketing/marketinglistmember/add/",
        {
            "entity": entity.pk,
            "marketing_list": marketing_list.pk,
            "contact": foreign_contact.pk,
            "email": "x@example.com",
            "status": "subscribed",
            "source": "admin",
            "added_at_0": "2026-01-01",
            "added_at_1": "00:00:00",
        },
    )
    assert response.status_code == 200
    assert "Must belong to the member&#x27;s entity." in response.content.decode()
    assert not MarketingListMember.objects.exists()


def test_the_admin_refuses_a_contact_without_name_or_email(staff_client, entity):
    inline = {"memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0"}
    response = staff_client.post(
        "/admin/crm/contact/add/", {"entity": entity.pk, "first_name": "", "email": "", **inline}
    )
    assert response.status_code == 200
    assert "at least one of firstName, lastName or email" in response.content.decode()
    assert not Contact.objects.exists()


def test_the_contact_service_itself_stores_emails_lower_cased(entity):
    contact = contact_create(entity=entity, email="  Ada@Example.COM ")
    assert contact.email == "ada@example.com"
    contact_update(contact=contact, email="GRACE@example.com")
    contact.refresh_from_db()
    assert contact.email == "grace@example.com"
