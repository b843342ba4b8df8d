"""The admin's "Merge the two selected" action on contacts and companies: through the merge
service, exactly two rows, the older one surviving, and a scoped staff user never reaching
another entity's rows."""

from __future__ import annotations

import pytest

from crm.models import Company, Contact, Lead, MergedRecord
from tests import factories

pytestmark = pytest.mark.django_db


def act(client, path: str, ids) -> object:
    body = {"action": "merge_two", "_selected_action": [str(pk) for pk in ids], "index": "0"}
    return client.post(path, body, follow=True)


def test_merge_two_contacts(staff_client, entity):
    older = factories.make_contact(entity, first_name="Ada", phone="")
    newer = factories.make_contact(entity, first_name="Ada", phone="030 123456")
    factories.make_lead(entity, contact=newer)
    response = act(staff_client, "/admin/crm/contact/", [newer.pk, older.pk])
    assert response.status_code == 200
    assert "Merged" in response.content.decode()
    older.refresh_from_db()
    assert older.phone == "030 123456"
    assert not Contact.objects.filter(pk=newer.pk).exists()
    assert Lead.objects.get().contact_id == older.pk
    assert MergedRecord.objects.get().survivor_id == older.pk


def test_merge_two_companies(staff_client, entity):
    older, newer = factories.make_company(entity, name="Acme"), factories.make_company(entity, name="ACME Inc")
    factories.make_contact(entity, company=newer)
    act(staff_client, "/admin/crm/company/", [older.pk, newer.pk])
    assert list(Company.objects.values_list("pk", flat=True)) == [older.pk]


@pytest.mark.parametrize("count", [1, 3])
def test_exactly_two(staff_client, entity, count):
    rows = [factories.make_contact(entity) for _ in range(count)]
    response = act(staff_client, "/admin/crm/contact/", [row.pk for row in rows])
    assert "Select exactly two records to merge." in response.content.decode()
    assert Contact.objects.count() == count


def test_two_entities_are_refused(staff_client, entity, other_entity):
    mine, theirs = factories.make_contact(entity), factories.make_contact(other_entity)
    response = act(staff_client, "/admin/crm/contact/", [mine.pk, theirs.pk])
    assert "different entities" in response.content.decode()
    assert Contact.objects.count() == 2


def test_scoped_staff_cannot_merge_another_entitys_row(scoped_staff_client, entity, other_entity):
    mine = factories.make_contact(entity)
    theirs = factories.make_contact(other_entity)
    response = act(scoped_staff_client, "/admin/crm/contact/", [mine.pk, theirs.pk])
    assert "Select exactly two records to merge." in response.content.decode()  # theirs is not in the list
    assert Contact.objects.filter(pk=theirs.pk).exists() and Contact.objects.filter(pk=mine.pk).exists()
