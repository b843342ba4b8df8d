"""The duplicates page in Chromium: a pair side by side with the differing fields marked, the
survivor and a field's source picked, merged; a pair dismissed; "Merge with…" from a company's
page through the search to the merge. Plus an axe-core check of each page."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from crm.models import Company, Contact, Lead
from crm.services.companies import company_create
from crm.services.contacts import contact_create
from tests import factories
from tests.browser.conftest import assert_accessible, login

pytestmark = pytest.mark.browser


def test_merge_a_pair_picking_the_survivor_and_a_field(page: Page, owner, workspace):
    acme = company_create(entity=workspace, name="Acme")
    first = contact_create(entity=workspace, first_name="Ada", last_name="Lovelace", phone="030 111111", company=acme)
    second = contact_create(
        entity=workspace, first_name="Ada", last_name="Lovelace", phone="030 222222", title="CEO", company=acme
    )
    factories.make_lead(workspace, contact=first, title="Engines")
    login(page, owner)
    page.goto(f"/crm/duplicates?entityId={workspace.pk}")
    pair = page.locator("form.duplicate-pair")
    expect(pair).to_have_count(1)
    expect(pair.locator("tr.differs[data-field='phone']")).to_be_visible()
    expect(pair.locator("tr.differs[data-field='title']")).to_be_visible()
    expect(pair.locator("tr.differs[data-field='firstName']")).to_have_count(0)
    expect(pair.locator("[data-reason='same_name_same_company']")).to_be_visible()
    assert_accessible(page, "duplicates")

    pair.locator(f"input[name='survivor'][value='{second.pk}']").check()
    pair.locator(f"input[name='source.phone'][value='{first.pk}']").check()
    pair.get_by_role("button", name="Merge").click()
    expect(page.get_by_text("No duplicates found.")).to_be_visible()
    expect(page.get_by_text("Merged")).to_be_visible()

    survivor = Contact.objects.get(pk=second.pk)
    assert survivor.phone == "030 111111" and survivor.title == "CEO"
    assert not Contact.objects.filter(pk=first.pk).exists()
    assert Lead.objects.get(title="Engines").contact_id == survivor.pk


def test_dismiss_a_company_pair(page: Page, owner, workspace):
    company_create(entity=workspace, name="Globex Inc.")
    company_create(entity=workspace, name="GLOBEX")
    login(page, owner)
    page.goto(f"/crm/duplicates?entityId={workspace.pk}&kind=companies")
    expect(page.locator("form.duplicate-pair")).to_have_count(1)
    page.get_by_role("button", name="Not duplicates").click()
    expect(page.get_by_text("No duplicates found.")).to_be_visible()
    assert Company.objects.for_entity(workspace).count() == 2


def test_merge_with_from_a_company_page(page: Page, owner, workspace):
    keep = company_create(entity=workspace, name="Initech")
    gone = company_create(entity=workspace, name="Initrode", city="Austin")
    login(page, owner)
    page.goto(f"/crm/companies/{keep.pk}?entityId={workspace.pk}")
    page.get_by_role("link", name="Merge with…").click()
    page.get_by_label("Name contains").fill("initr")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name="Initrode").click()
    form = page.locator("form.duplicate-pair")
    expect(form.locator("tr.differs[data-field='name']")).to_be_visible()
    assert_accessible(page, "merge compare")
    form.get_by_role("button", name="Merge").click()
    page.wait_for_url(f"**/crm/companies/{keep.pk}**")
    expect(page.get_by_role("heading", name="Initech")).to_be_visible()
    assert not Company.objects.filter(pk=gone.pk).exists()
    assert Company.objects.get(pk=keep.pk).city == "Austin"
