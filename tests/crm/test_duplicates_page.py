"""`/crm/duplicates` over the test client: pairs side by side, merge with chosen sources, dismiss,
"Merge with…" search, and another entity's ids refused."""

from __future__ import annotations

import re
import uuid

import pytest

from crm.models import Contact, DuplicateDismissal, Lead
from crm.services.companies import company_create
from crm.services.contacts import contact_create
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def pair(entity):
    acme = company_create(entity=entity, name="Acme")
    a = contact_create(entity=entity, first_name="Ada", last_name="Lovelace", phone="111111", company=acme)
    b = contact_create(entity=entity, first_name="Ada", last_name="Lovelace", phone="222222", title="CEO", company=acme)
    return a, b


def test_list_shows_pairs_with_differing_fields(signed_in, entity, pair):
    a, b = pair
    response = signed_in.get(f"/crm/duplicates?entityId={entity.pk}")
    assert response.status_code == 200
    html = response.content.decode()
    assert f'data-pair="{a.pk} {b.pk}"' in html or f'data-pair="{b.pk} {a.pk}"' in html
    assert 'data-field="phone" class="differs"' in html
    assert 'data-field="firstName">' in html  # equal: shown, not marked
    assert 'data-reason="same_name_same_company"' in html


def test_merge_from_the_page_takes_the_chosen_sources(signed_in, entity, pair):
    a, b = pair
    factories.make_lead(entity, contact=b)
    response = signed_in.post(
        f"/crm/duplicates/merge?entityId={entity.pk}",
        {"kind": "contacts", "a": a.pk, "b": b.pk, "survivor": a.pk, "source.phone": b.pk},
    )
    assert response.status_code == 302
    a.refresh_from_db()
    assert a.phone == "222222" and a.title == "CEO"
    assert not Contact.objects.filter(pk=b.pk).exists()
    assert Lead.objects.filter(contact=a).count() == 1
    page = signed_in.get(response["Location"]).content.decode()
    assert "Merged" in page and "No duplicates found." in page


def test_dismiss_from_the_page(signed_in, entity, pair):
    a, b = pair
    response = signed_in.post(
        f"/crm/duplicates/dismiss?entityId={entity.pk}", {"kind": "contacts", "a": a.pk, "b": b.pk}
    )
    assert response.status_code == 302
    assert DuplicateDismissal.objects.count() == 1
    assert "No duplicates found." in signed_in.get(f"/crm/duplicates?entityId={entity.pk}").content.decode()


def test_merge_with_search_and_compare(signed_in, entity):
    a = company_create(entity=entity, name="Initech")
    b = company_create(entity=entity, name="Initrode")
    page = signed_in.get(f"/crm/companies/{a.pk}/merge-with?entityId={entity.pk}&q=init").content.decode()
    assert f'data-id="{b.pk}"' in page and f'data-id="{a.pk}"' not in page
    assert "Merge with…" in signed_in.get(f"/crm/companies/{a.pk}?entityId={entity.pk}").content.decode()
    compare = signed_in.get(f"/crm/duplicates/compare?entityId={entity.pk}&kind=companies&a={a.pk}&b={b.pk}")
    assert compare.status_code == 200 and 'data-field="name" class="differs"' in compare.content.decode()
    response = signed_in.post(
        f"/crm/duplicates/merge?entityId={entity.pk}",
        {"kind": "companies", "a": a.pk, "b": b.pk, "survivor": b.pk, "next": "record"},
    )
    assert response["Location"].startswith(f"/crm/companies/{b.pk}")


def test_other_entities_records_are_404(signed_in, entity, other_entity):
    mine = factories.make_contact(entity)
    foreign = factories.make_contact(other_entity)
    assert signed_in.get(f"/crm/duplicates/compare?entityId={entity.pk}&a={mine.pk}&b={foreign.pk}").status_code == 404
    assert signed_in.get(f"/crm/contacts/{foreign.pk}/merge-with?entityId={entity.pk}").status_code == 404
    response = signed_in.post(
        f"/crm/duplicates/merge?entityId={entity.pk}", {"a": mine.pk, "b": foreign.pk, "survivor": mine.pk}
    )
    assert response.status_code == 404
    assert Contact.objects.filter(pk=foreign.pk).exists()


def test_a_merged_records_page_redirects_to_the_survivor(signed_in, entity, pair):
    a, b = pair
    signed_in.post(
        f"/crm/duplicates/merge?entityId={entity.pk}", {"kind": "contacts", "a": a.pk, "b": b.pk, "survivor": a.pk}
    )
    response = signed_in.get(f"/crm/contacts/{b.pk}?entityId={entity.pk}")
    assert response.status_code == 302 and response["Location"].startswith(f"/crm/contacts/{a.pk}")
    assert signed_in.get(f"/crm/contacts/{uuid.uuid4()}?entityId={entity.pk}").status_code == 404
    keep, gone = company_create(entity=entity, name="Keep"), company_create(entity=entity, name="Gone")
    signed_in.post(
        f"/crm/duplicates/merge?entityId={entity.pk}",
        {"kind": "companies", "a": keep.pk, "b": gone.pk, "survivor": keep.pk},
    )
    assert signed_in.get(f"/crm/companies/{gone.pk}?entityId={entity.pk}")["Location"].startswith(
        f"/crm/companies/{keep.pk}"
    )


def test_the_list_pages_by_cursor(signed_in, entity):
    for n in range(21):
        contact_create(entity=entity, first_name=f"A{n}", phone=f"0{n:02d}0 123456")
        contact_create(entity=entity, first_name=f"B{n}", phone=f"0{n:02d}0123456")
    first = signed_in.get(f"/crm/duplicates?entityId={entity.pk}").content.decode()
    assert first.count('class="card duplicate-pair"') == 20
    [next_url] = re.findall(r'href="([^"]*cursor=[^"]+)"', first)
    rest = signed_in.get(next_url.replace("&amp;", "&")).content.decode()
    assert rest.count('class="card duplicate-pair"') == 1 and "More pairs" not in rest
    assert signed_in.get(f"/crm/duplicates?entityId={entity.pk}&cursor=garbage").status_code == 200
