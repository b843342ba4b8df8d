"""CSV export: the list's filters and order, every field as the API names it, flat memory, and a
round trip through the import that changes nothing."""

from __future__ import annotations

import tracemalloc

import pytest

from axiomatic.models import Change
from crm.models import Company
from tests import factories
from tests.crm.bulk_helpers import read_csv, run_import
from tests.helpers import assert_error

pytestmark = pytest.mark.django_db


def _export(api, resource: str, params: dict | None = None):
    response = api.get(f"/{resource}/export", params)
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="{resource}.csv"'
    return read_csv(response)


def test_companies_export_has_every_field_in_the_lists_order_with_its_filters(api, entity, other_entity, user):
    factories.make_company(entity, name="Beta", role="customer", domain="beta.example", city="Rome")
    factories.make_company(entity, name="alpha", role="customer", owner=user)
    factories.make_company(entity, name="Gamma", role="vendor")
    factories.make_company(other_entity, name="Other", role="customer")
    rows = _export(api, "companies")
    listed = api.get("/companies").json()["companies"]
    # One column per field, as the API names it (`customFields.<key>` per custom field: none here).
    assert rows[0] == [name for name in listed[0] if name != "customFields"]
    assert [row[rows[0].index("name")] for row in rows[1:]] == [item["name"] for item in listed]
    customers = _export(api, "companies", {"role": "customer"})
    listed = [item["name"] for item in api.get("/companies", {"role": "customer"}).json()["companies"]]
    assert [row[1] for row in customers[1:]] == listed and sorted(listed) == ["Beta", "alpha"]
    beta = dict(zip(customers[0], customers[1 + listed.index("Beta")], strict=True))
    assert (beta["domain"], beta["city"], beta["ownerUserId"], beta["archivedAt"]) == ("beta.example", "Rome", "", "")
    mine = _export(api, "companies", {"ownerUserId": "me", "q": "ALP"})
    assert [row[1] for row in mine[1:]] == ["alpha"]


def test_bad_filters_are_400_before_anything_streams(api):
    assert_error(api.get("/companies/export", {"role": "planet"}), 400)
    assert_error(api.get("/contacts/export", {"companyId": "not-a-uuid"}), 400)


def test_export_needs_read_scope_and_stays_in_the_entity(make_api, other_api, entity):
    factories.make_company(entity, name="Mine")
    write_only = make_api(scopes=("write:crm",))
    assert_error(write_only.get("/companies/export"), 403)
    assert len(_export(other_api, "companies")) == 1  # the header only


def test_contacts_leads_and_activities_export(api, entity):
    acme = factories.make_company(entity, name="Acme")
    ada = factories.make_contact(entity, first_name="Ada", last_name="Lovelace", email="ada@example.com", company=acme)
    lead = factories.make_lead(entity, "won", title="Deal", value="1250.5", company=acme, contact=ada)
    factories.make_activity(entity, subject="Call Ada", lead=lead)
    contacts = _export(api, "contacts", {"companyId": str(acme.pk)})
    row = dict(zip(contacts[0], contacts[1], strict=True))
    assert (row["fullName"], row["companyId"], row["email"]) == ("Ada Lovelace", str(acme.pk), "ada@example.com")
    leads = _export(api, "leads", {"status": "won"})
    row = dict(zip(leads[0], leads[1], strict=True))
    assert (row["value"], row["stage"], row["status"], row["stageId"]) == ("1250.50", "Won", "won", str(lead.stage_id))
    assert row["createdAt"].endswith("Z")
    activities = _export(api, "activities", {"leadId": str(lead.pk)})
    assert dict(zip(activities[0], activities[1], strict=True))["subject"] == "Call Ada"


def test_an_export_imported_with_match_on_id_changes_nothing(api, entity, user, django_capture_on_commit_callbacks):
    acme = factories.make_company(entity, name="Acme", domain="acme.example", notes='Line one\nLine two, quoted "x"')
    factories.make_company(entity, name="Plain", status="inactive", owner=user, country="DE")
    ada = factories.make_contact(entity, first_name="Ada", email="ada@example.com", company=acme, owner=user)
    factories.make_contact(entity, last_name="Only")
    factories.make_lead(entity, "lost", title="Lost one", value="10", lost_reason="Price", company=acme, contact=ada)
    factories.make_lead(entity, "new", title="Open one", expected_close_date="2027-01-31", owner=user)
    changes_before = Change.objects.count()
    for resource, object_type in (("companies", "company"), ("contacts", "contact"), ("leads", "lead")):
        response = api.get(f"/{resource}/export")
        assert response.status_code == 200, response.content
        text = b"".join(response.streaming_content).decode()
        job = run_import(api, django_capture_on_commit_callbacks, text, objectType=object_type, matchOn="id")
        assert job["status"] == "succeeded", job
        assert job["unchanged"] == job["totalRows"] == job["processedRows"], (resource, job)
        assert job["failed"] == 0 and job["updated"] == 0 and job["created"] == 0
    assert Change.objects.count() == changes_before


def test_export_memory_stays_flat(api, entity):
    """Peak memory while streaming 9,000 rows stays under a small bound, and near the 4,500-row peak
    (both past two cursor chunks of 2,000 rows: memory follows the chunk, not the export)."""

    def add(count: int, start: int) -> None:
        Company.objects.bulk_create(
            [Company(entity=entity, name=f"Company {n:05d}", notes="x" * 200) for n in range(start, start + count)]
        )

    def peak() -> tuple[int, int]:
        response = api.get("/companies/export")
        tracemalloc.start()
        rows = sum(chunk.count(b"\n") for chunk in response.streaming_content)
        _, high = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return rows, high

    add(4500, 0)
    peak()  # warm: first-use imports and caches are no part of the export's memory
    rows, small = peak()
    assert rows == 4501
    add(4500, 4500)
    rows, large = peak()
    assert rows == 9001
    assert large < 12 * 1024 * 1024, large  # all 9,000 rows held would take several times more
    assert large < small * 1.2, (small, large)
