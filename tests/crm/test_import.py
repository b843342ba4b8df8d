"""CSV import over the API: mapping, matching, dry runs, bad rows, the error file, counters."""

from __future__ import annotations

import pytest

from axiomatic.models import Change
from crm.models import Company, CompanyMembership, Contact, Import, Lead
from tests.crm.bulk_helpers import csv_text, read_csv, run_import, upload
from tests.helpers import assert_error

pytestmark = pytest.mark.django_db


def test_contacts_import_with_guessed_mapping_creates_and_counts(api, django_capture_on_commit_callbacks):
    content = csv_text(
        [
            ["First Name", "last_name", "E-mail", "Job Title", "Company Domain", "Favourite colour"],
            ["Ada", "Lovelace", "ADA@example.com", "Countess", "", "green"],
            ["Alan", "Turing", "alan@example.com", "", "", "blue"],
        ]
    )
    job = run_import(api, django_capture_on_commit_callbacks, content, objectType="contact")
    assert job["status"] == "succeeded", job
    assert (job["totalRows"], job["processedRows"], job["created"], job["failed"]) == (2, 2, 2, 0)
    ada = Contact.objects.get(email="ada@example.com")
    assert (ada.first_name, ada.last_name, ada.title) == ("Ada", "Lovelace", "Countess")
    listed = api.get("/imports").json()
    assert listed["imports"][0]["id"] == job["id"] and listed["total"] == 1
