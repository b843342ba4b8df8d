"""`/crm/import` in Chromium: upload, the guessed mapping (edited), a dry run, the real run to
100 %, the error file; and the export links of the list pages keep their filters."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from crm.models import Contact, Import
from tests import factories
from tests.browser.conftest import assert_accessible, login

pytestmark = pytest.mark.browser

CONTENT = (
    "First Name,Surname,E-mail,Shoe size\n"
    "Ada,Lovelace,ada@example.com,38\n"
    "Alan,Turing,alan@example.com,44\n"
    ",,not-an-email,40\n"
    "Grace,Hopper,grace@example.com,37\n"
)


def test_upload_map_dry_run_run_and_download_errors(page: Page, owner, workspace):
    login(page, owner)
    page.goto(f"/crm/import?entityId={workspace.pk}")
    page.get_by_label("Records").select_option("contact")
    page.get_by_label("CSV file").set_input_files(
        files=[{"name": "people.csv", "mimeType": "text/csv", "buffer": CONTENT.encode()}]
    )
    page.get_by_role("button", name="Upload and map columns").click()

    # The guess, shown in one select per column, with the stored rows beside it.
    expect(page.get_by_label("Field for First Name")).to_have_value("firstName")
    expect(page.get_by_label("Field for E-mail")).to_have_value("email")
    expect(page.get_by_label("Field for Surname")).to_have_value("")
    expect(page.locator("tr[data-column='Surname']")).to_contain_text("Lovelace")
    assert_accessible(page, "import mapping")
    page.get_by_label("Field for Surname").select_option("lastName")

    page.get_by_role("button", name="Dry run").click()
    progress = page.locator("#import-progress")
    expect(progress).to_have_attribute("data-status", "succeeded")
    expect(progress.locator("[data-count='created']")).to_have_text("3")
    expect(progress.locator("[data-count='failed']")).to_have_text("1")
    assert not Contact.objects.exists()  # a dry run writes nothing

    page.get_by_role("button", name="Import", exact=True).click()
    expect(page.locator("#import-progress h2")).to_have_text("Import: succeeded")
    expect(page.locator("#import-progress [data-processed]")).to_contain_text("4 of 4 rows (100 %)")
    assert sorted(Contact.objects.values_list("last_name", flat=True)) == ["Hopper", "Lovelace", "Turing"]

    with page.expect_download() as download:
        page.locator("[data-error-file]").click()
    rows = list(csv.reader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8"))))
    assert rows[0] == ["First Name", "Surname", "E-mail", "Shoe size", "error"]
    assert rows[1][:3] == ["", "", "not-an-email"] and "email" in rows[1][4]

    page.goto(f"/crm/import?entityId={workspace.pk}")
    expect(page.get_by_role("table", name="Last imports").locator("tbody tr")).to_have_count(2)
    assert Import.objects.filter(dry_run=False).count() == 1


def test_export_links_keep_the_list_filters(page: Page, owner, workspace):
    factories.make_company(workspace, name="Acme", role="customer")
    login(page, owner)
    page.goto(f"/crm/companies?entityId={workspace.pk}&role=customer&q=ac")
    href = page.get_by_role("link", name="Export CSV").get_attribute("href")
    assert href.startswith("/api/crm/companies/export?") and "role=customer" in href and "q=ac" in href
    response = page.request.get(href)
    assert response.status == 200 and "Acme" in response.text()
    page.goto(f"/crm/contacts?entityId={workspace.pk}&q=zed")
    href = page.get_by_role("link", name="Export CSV").get_attribute("href")
    assert href.startswith("/api/crm/contacts/export?") and "q=zed" in href
