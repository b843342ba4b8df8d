"""Custom fields (§13) through the bulk paths: import mapping by key and label, batch items
validated by the custom-field rules, export columns `customFields.<key>`, a round trip."""

from __future__ import annotations

import pytest

from crm.models import Company
from crm.services.custom_fields import custom_field_create
from tests import factories
from tests.crm.bulk_helpers import csv_text, read_csv, run_import

pytestmark = pytest.mark.django_db


@pytest.fixture
def fields(entity):
    custom_field_create(entity=entity, object_type="company", key="tier", label="Customer tier", type="text")
    custom_field_create(entity=entity, object_type="company", key="seats", label="Seats", type="number")
    custom_field_create(entity=entity, object_type="company", key="vip", label="VIP", type="boolean")


def test_import_maps_custom_fields_by_label_key_and_explicit_name(
    api, entity, fields, django_capture_on_commit_callbacks
):
    content = csv_text(
        [["name", "Customer Tier", "SEATS", "flag"], ["Acme", "gold", "25", "yes"], ["Beta", "silver", "many", ""]]
    )
    job = run_import(
        api, django_capture_on_commit_callbacks, content, objectType="company", matchOn="none",
        mapping={"flag": "customFields.vip"},
    )  # fmt: skip
    assert (job["created"], job["failed"]) == (1, 1), job
    acme = api.get(f"/companies/{Company.objects.get(name='Acme').pk}").json()["company"]
    assert acme["customFields"] == {"tier": "gold", "seats": "25", "vip": True}
    (error,) = api.get(f"/imports/{job['id']}/errors").json()["errors"]
    assert error["column"] == "SEATS" and error["row"] == 2


def test_batch_validates_custom_fields_like_a_single_post(api, entity, fields):
    body = api.post(
        "/companies/batch",
        {
            "operation": "create",
            "items": [{"name": "A", "customFields": {"seats": "x"}}, {"name": "B", "customFields": {"tier": "t"}}],
        },
    ).json()
    single = api.post("/companies", {"name": "A", "customFields": {"seats": "x"}}).json()
    assert body["results"][0] == {"index": 0, "status": 400, **single}
    assert body["results"][1]["company"]["customFields"]["tier"] == "t"


def test_export_has_a_column_per_custom_field_and_round_trips(api, entity, fields, django_capture_on_commit_callbacks):
    api.post("/companies", {"name": "Acme", "customFields": {"tier": "gold", "seats": "12.5", "vip": False}})
    factories.make_company(entity, name="Plain")
    rows = read_csv(api.get("/companies/export"))
    assert [c for c in rows[0] if c.startswith("customFields")] == [
        "customFields.tier", "customFields.seats", "customFields.vip",
    ]  # fmt: skip
    acme = dict(zip(rows[0], next(r for r in rows if "Acme" in r), strict=True))
    assert (acme["customFields.tier"], acme["customFields.seats"], acme["customFields.vip"]) == (
        "gold",
        "12.5",
        "false",
    )
    text = b"".join(api.get("/companies/export").streaming_content).decode()
    job = run_import(api, django_capture_on_commit_callbacks, text, objectType="company", matchOn="id")
    assert job["unchanged"] == 2 and job["failed"] == 0, job


def test_clear_empty_clears_mapped_custom_fields_and_otherwise_keeps_them(
    api, entity, fields, django_capture_on_commit_callbacks
):
    body = {"name": "Acme", "domain": "acme.example", "customFields": {"tier": "gold", "seats": "25", "vip": True}}
    pk = api.post("/companies", body).json()["company"]["id"]
    content = csv_text([["domain", "tier", "seats"], ["acme.example", "", "30"]])

    job = run_import(api, django_capture_on_commit_callbacks, content, objectType="company")
    assert job["updated"] == 1, job
    assert api.get(f"/companies/{pk}").json()["company"]["customFields"] == {"tier": "gold", "seats": "30", "vip": True}

    job = run_import(api, django_capture_on_commit_callbacks, content, objectType="company", clearEmpty=True)
    assert job["updated"] == 1, job
    assert api.get(f"/companies/{pk}").json()["company"]["customFields"] == {"tier": None, "seats": "30", "vip": True}

    job = run_import(api, django_capture_on_commit_callbacks, content, objectType="company", clearEmpty=True)
    assert job["unchanged"] == 1, job  # clearing what is already empty changes nothing
