"""`POST /{resource}/batch`: per-item statuses and bodies exactly as single requests, allOrNone,
limits, isolation, idempotency, and a bounded number of queries."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from axiomatic.models import Change
from crm.models import Activity, Company, CompanyMembership, Contact, Lead, LeadEvent
from tests import factories
from tests.helpers import assert_error

pytestmark = pytest.mark.django_db


def _batch(api, resource: str, operation: str, items: list, **extra):
    return api.post(f"/{resource}/batch", {"operation": operation, "items": items, **extra})


def _strip_times(body: dict) -> dict:
    return {key: value for key, value in body.items() if key not in ("id", "createdAt", "updatedAt", "stageChangedAt")}


def test_create_answers_each_item_as_the_single_post_would(api, entity):
    items = [
        {"name": "Acme", "domain": "https://WWW.acme.example/x", "country": "de"},
        {"name": ""},
        {"name": "Dup", "domain": "acme.example"},
        {"name": "Again", "domain": "www.acme.example"},
        {"name": "Stranger", "color": "red"},
    ]
    response = _batch(api, "companies", "create", items)
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["succeeded"], body["failed"]) == (2, 3)
    results = body["results"]
    assert [r["index"] for r in results] == [0, 1, 2, 3, 4]
    assert [r["status"] for r in results] == [201, 400, 201, 409, 400]
    single = api.post("/companies", {"name": "Acme", "domain": "https://WWW.acme.example/x", "country": "de"})
    assert single.status_code == 409  # the batch's item 0 holds the domain now
    assert _strip_times(results[0]["company"]) == _strip_times(
        api.get(f"/companies/{results[0]['company']['id']}").json()["company"]
    )
    assert results[0]["company"]["domain"] == "www.acme.example" and results[0]["company"]["country"] == "DE"
    assert results[1] == {"index": 1, "status": 400, **api.post("/companies", {"name": ""}).json()}
    assert results[3]["existingId"] == results[0]["company"]["id"]
    assert results[3]["error"] == single.json()["error"]
    assert results[4]["details"] == {"color": ["Unknown field."]}
    assert Change.objects.filter(entity_id=entity.pk, type="company.created").count() == 2


def test_update_upsert_and_delete(api, entity):
    acme = factories.make_company(entity, name="Acme", domain="acme.example")
    ada = factories.make_contact(entity, first_name="Ada", email="ada@example.com")
    grace = factories.make_contact(entity, first_name="Grace", email="grace@example.com")
    missing = "7f1f8a0e-0000-4000-8000-000000000000"

    updated = _batch(
        api,
        "contacts",
        "update",
        [{"id": str(ada.pk), "lastName": "Lovelace", "companyId": str(acme.pk)}, {"id": missing, "lastName": "X"}, {}],
    ).json()
    assert [r["status"] for r in updated["results"]] == [200, 404, 400]
    assert updated["results"][0]["contact"]["companyId"] == str(acme.pk)
    assert updated["results"][0]["contact"]["fullName"] == "Ada Lovelace"
    assert updated["results"][1] == {"index": 1, "status": 404, "error": "Not found."}
    assert CompanyMembership.objects.get(contact=ada).is_primary

    upserted = _batch(
        api, "contacts", "upsert", [{"email": "GRACE@example.com", "lastName": "Hopper"}, {"email": "new@example.com"}]
    ).json()
    assert [r["status"] for r in upserted["results"]] == [200, 201]
    grace.refresh_from_db()
    assert grace.last_name == "Hopper"

    deleted = _batch(api, "contacts", "delete", [{"id": str(grace.pk)}, {"id": missing}]).json()
    assert deleted["results"] == [{"index": 0, "status": 204}, {"index": 1, "status": 404, "error": "Not found."}]
    assert not Contact.objects.filter(pk=grace.pk).exists()
    assert Change.objects.filter(entity_id=entity.pk, type="contact.deleted").count() == 1

    lead = factories.make_lead(entity, title="Deal")
    deleted = _batch(api, "leads", "delete", [{"id": str(lead.pk)}]).json()
    assert deleted["results"] == [{"index": 0, "status": 200, "ok": True}]
    refused = _batch(api, "companies", "delete", [{"id": str(acme.pk)}]).json()
    assert refused["results"][0]["status"] == 405 and Company.objects.filter(pk=acme.pk).exists()


def test_upsert_on_domain_and_id_for_companies(api, entity):
    acme = factories.make_company(entity, name="Acme", domain="acme.example")
    body = _batch(
        api,
        "companies",
        "upsert",
        [{"name": "Acme Corp", "domain": "ACME.example"}, {"name": "New", "domain": "new.example"}],
    ).json()
    assert [r["status"] for r in body["results"]] == [200, 201]
    assert body["results"][0]["company"]["id"] == str(acme.pk)
    body = _batch(api, "companies", "upsert", [{"id": str(acme.pk), "name": "Renamed"}], matchOn="id").json()
    assert body["results"][0]["company"]["name"] == "Renamed"
    assert_error(_batch(api, "leads", "upsert", [{"title": "x"}], matchOn="email"), 400)


def test_leads_batch_follows_the_stage_rules(api, entity):
    lead = factories.make_lead(entity, title="Deal")
    body = _batch(
        api,
        "leads",
        "update",
        [{"id": str(lead.pk), "stage": "lost", "lostReason": "Price"}, {"id": str(lead.pk), "lostReason": "x"}],
    ).json()
    assert body["results"][0]["status"] == 200
    assert body["results"][0]["lead"]["status"] == "lost" and body["results"][0]["lead"]["closedAt"]
    # The second item sees the first one's write: a lost reason on a lost lead is fine.
    assert body["results"][1]["status"] == 200
    assert LeadEvent.objects.filter(lead=lead, kind="stage_changed").count() == 1
    created = _batch(api, "leads", "create", [{"title": "A", "stage": "won", "lostReason": "no"}, {"title": "B"}])
    results = created.json()["results"]
    single = api.post("/leads", {"title": "A", "stage": "won", "lostReason": "no"})
    assert results[0] == {"index": 0, "status": 400, **single.json()}
    assert results[1]["lead"]["stage"]["systemKey"] == "new"


def test_activities_batch(api, entity):
    lead = factories.make_lead(entity, title="Deal")
    body = _batch(
        api,
        "activities",
        "create",
        [{"type": "call", "subject": "Hi", "leadId": str(lead.pk)}, {"type": "call"}, {"type": "task", "subject": "T"}],
    ).json()
    assert [r["status"] for r in body["results"]] == [201, 400, 201]
    assert body["results"][2]["activity"]["status"] == "open"
    task_id = body["results"][2]["activity"]["id"]
    done = _batch(api, "activities", "update", [{"id": task_id, "status": "completed"}]).json()
    assert done["results"][0]["activity"]["completedAt"]
    gone = _batch(api, "activities", "delete", [{"id": task_id}]).json()
    assert gone["results"][0]["status"] == 200 and not Activity.objects.filter(pk=task_id).exists()


def test_all_or_none_rolls_every_item_back(api, entity):
    response = _batch(api, "companies", "create", [{"name": "Good"}, {"name": ""}, {"name": "Fine"}], allOrNone=True)
    assert response.status_code == 400
    body = response.json()
    assert (body["succeeded"], body["failed"]) == (0, 1)
    assert body["results"][1]["status"] == 400 and body["results"][1]["error"]
    assert body["results"][0]["rolledBack"] is True and body["results"][2]["rolledBack"] is True
    assert not Company.objects.filter(entity=entity).exists()
    assert not Change.objects.filter(entity_id=entity.pk, object_type="company").exists()
    ok = _batch(api, "companies", "create", [{"name": "Good"}, {"name": "Fine"}], allOrNone=True)
    assert ok.status_code == 200 and ok.json()["succeeded"] == 2


@pytest.mark.parametrize(
    "payload,field",
    [
        ({"operation": "create", "items": []}, "items"),
        ({"operation": "create", "items": [{"name": f"C{n}"} for n in range(101)]}, "items"),
        ({"operation": "merge", "items": [{"name": "x"}]}, "operation"),
        ({"items": [{"name": "x"}]}, "operation"),
        ({"operation": "create", "items": [{"name": "x"}], "colour": "red"}, "colour"),
    ],
)
def test_bad_batches_are_400(api, payload, field):
    body = assert_error(api.post("/companies/batch", payload), 400)
    assert field in body["details"]
    assert not Company.objects.exists()


def test_items_that_are_not_objects_or_name_another_entity_fail_alone(api, other_entity):
    body = _batch(api, "companies", "create", ["nope", {"name": "X", "entityId": str(other_entity.pk)}, {"name": "Y"}])
    assert [r["status"] for r in body.json()["results"]] == [400, 400, 201]


def test_ids_of_another_entity_read_as_missing(api, other_entity, entity):
    theirs = factories.make_company(other_entity, name="Theirs")
    their_contact = factories.make_contact(other_entity, first_name="Them")
    results = _batch(api, "companies", "update", [{"id": str(theirs.pk), "name": "Mine now"}]).json()["results"]
    assert results == [{"index": 0, "status": 404, "error": "Not found."}]
    results = _batch(api, "contacts", "create", [{"firstName": "A", "companyId": str(theirs.pk)}]).json()["results"]
    assert results[0]["status"] == 400 and "companyId" in results[0]["details"]
    single = api.post("/contacts", {"firstName": "A", "companyId": str(theirs.pk)}).json()
    assert results[0] == {"index": 0, "status": 400, **single}
    results = _batch(api, "contacts", "delete", [{"id": str(their_contact.pk)}]).json()["results"]
    assert results[0]["status"] == 404
    theirs.refresh_from_db()
    assert theirs.name == "Theirs" and Contact.objects.filter(pk=their_contact.pk).exists()


def test_scopes_and_idempotency(api, make_api, entity):
    read_only = make_api(scopes=("read:crm",))
    assert_error(_batch(read_only, "companies", "create", [{"name": "x"}]), 403)
    payload = {"operation": "create", "items": [{"name": "Once"}]}
    first = api.post("/companies/batch", payload, headers={"Idempotency-Key": "batch-1"})
    again = api.post("/companies/batch", payload, headers={"Idempotency-Key": "batch-1"})
    assert again.json() == first.json() and again["Idempotent-Replayed"] == "true"
    assert Company.objects.filter(entity=entity, name="Once").count() == 1
    assert (
        api.post(
            "/companies/batch", {**payload, "items": [{"name": "Other"}]}, headers={"Idempotency-Key": "batch-1"}
        ).status_code
        == 422
    )


@pytest.mark.parametrize("resource", ["companies", "contacts", "leads"])
def test_a_batch_of_100_creates_takes_a_bounded_number_of_queries(api, entity, user, resource):
    acme = factories.make_company(entity, name="Acme")
    bodies = {
        "companies": lambda n: {"name": f"C{n}", "domain": f"c{n}.example", "ownerUserId": str(user.pk)},
        "contacts": lambda n: {"firstName": f"F{n}", "email": f"p{n}@x.example", "companyId": str(acme.pk)},
        "leads": lambda n: {"title": f"L{n}", "stage": "won", "companyId": str(acme.pk), "value": "10"},
    }[resource]
    with CaptureQueriesContext(connection) as small:
        _batch(api, resource, "create", [bodies(n) for n in range(2)])
    with CaptureQueriesContext(connection) as large:
        response = _batch(api, resource, "create", [bodies(n) for n in range(100, 200)])
    assert response.json()["succeeded"] == 100, response.content[:500]
    assert len(large) <= len(small) + 2, (len(small), len(large))
    assert len(large) <= 40


def test_a_batch_of_100_updates_takes_a_bounded_number_of_queries(api, entity):
    leads = [factories.make_lead(entity, title=f"L{n}") for n in range(100)]
    with CaptureQueriesContext(connection) as queries:
        response = _batch(
            api, "leads", "update", [{"id": str(lead.pk), "title": "T", "stage": "qualified"} for lead in leads]
        )
    assert response.json()["succeeded"] == 100
    assert len(queries) <= 40, len(queries)
    assert Lead.objects.filter(entity=entity, stage__system_key="qualified").count() == 100
    assert LeadEvent.objects.filter(kind="stage_changed").count() == 100
    assert LeadEvent.objects.filter(kind="field_changed").count() == 100
    assert Change.objects.filter(entity_id=entity.pk, type="lead.stage_changed").count() == 100
