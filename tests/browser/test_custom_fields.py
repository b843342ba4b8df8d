"""Custom fields in a real browser: an admin defines a field on /settings/custom-fields, sets it on
a company through the edit form, sees it on the company's page and filters the list by it."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests import factories
from tests.browser.conftest import assert_accessible, login
from tests.browser.test_sales_pages import screenshot

pytestmark = pytest.mark.browser


def test_define_set_see_and_filter_by_a_custom_field(page, owner, workspace):
    acme = factories.make_company(workspace, name="Acme Corp")
    factories.make_company(workspace, name="Umbrella Ltd")
    login(page, owner)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Custom fields").click()
    page.wait_for_url("**/settings/custom-fields**")
    page.get_by_label("Object").select_option("company")
    page.get_by_label("Key").fill("tier")
    page.get_by_label("Label").fill("Tier")
    page.get_by_label("Type").select_option("select")
    page.get_by_label("Options").fill("gold|Gold\nsilver|Silver")
    page.get_by_role("button", name="Add field").click()
    expect(page.locator('[data-custom-field-row="tier"]')).to_contain_text("Tier")
    assert_accessible(page, "custom fields settings")
    screenshot(page, "custom-fields-settings")

    page.goto(f"/crm/companies/{acme.pk}/edit?entityId={workspace.pk}")
    page.get_by_label("Tier").select_option("gold")
    page.get_by_role("button", name="Save company").click()
    page.wait_for_url(f"**/crm/companies/{acme.pk}**")
    field = page.locator('[data-custom-field="tier"]')
    expect(field).to_have_text("Gold")
    screenshot(page, "custom-fields-company")

    field.get_by_role("link", name="Gold").click()
    page.wait_for_url("**/crm/companies?**cf.tier=gold**")
    expect(page.get_by_role("link", name="Acme Corp")).to_be_visible()
    expect(page.get_by_role("link", name="Umbrella Ltd")).to_have_count(0)
