"""Custom fields beyond the API's records: the lead timeline and the staff admin."""

from __future__ import annotations

import json
import re
from html import unescape

from crm.models import Company, CustomField, LeadEvent

OPTIONS = [{"value": "emea", "label": "EMEA"}, {"value": "apac", "label": "APAC"}]


def define(api, key, kind, object_type="company", **extra):
    response = api.post("/custom-fields", {"objectType": object_type, "key": key, "label": key, "type": kind, **extra})
    assert response.status_code == 201, response.content
    return response.json()["customField"]


def _text(response) -> str:
    return unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode())))


def test_lead_timeline_names_changed_custom_fields(api):
    define(api, "po", "text", object_type="lead", label="Purchase order")
    define(api, "budget", "currency", object_type="lead")
    lead = api.post("/leads", {"title": "Deal", "customFields": {"po": "PO-1"}}).json()["lead"]
    response = api.patch(
        f"/leads/{lead['id']}",
        {"title": "Bigger deal", "customFields": {"po": "PO-2", "budget": {"currency": "EUR", "amount": "10"}}},
    )
    assert response.status_code == 200, response.content
    (event,) = LeadEvent.objects.filter(lead_id=lead["id"], kind="field_changed")
    assert event.data["changes"] == {
        "title": ["Deal", "Bigger deal"],
        "customFields.po": ["PO-1", "PO-2"],
        "customFields.budget": [None, {"currency": "EUR", "amount": "10.00"}],
    }
    assert event.summary == "Changed title, Purchase order, budget"
    timeline = api.get(f"/leads/{lead['id']}/timeline").json()["timeline"]
    assert timeline[0]["kind"] == "field_changed" and "customFields.po" in timeline[0]["data"]["changes"]
    # only custom fields changed: still one field_changed event
    api.patch(f"/leads/{lead['id']}", {"customFields": {"po": None}})
    latest = LeadEvent.objects.filter(lead_id=lead["id"], kind="field_changed").order_by("-occurred_at").first()
    assert latest.data["changes"] == {"customFields.po": ["PO-2", None]}


def _admin_company(staff_client, entity, path="/admin/crm/company/add/", **fields):
    return staff_client.post(path, {"entity": entity.pk, "name": "X", "role": "prospect", "status": "active", **fields})


def test_admin_edits_values_with_the_same_validation(api, staff_client, entity):
    define(api, "tier", "select", options=OPTIONS)
    define(api, "seats", "number")
    refused = _admin_company(staff_client, entity, custom_fields=json.dumps({"tier": "mars"}))
    assert refused.status_code == 200
    api_error = api.post("/companies", {"name": "X", "customFields": {"tier": "mars"}}).json()
    assert api_error["details"]["customFields.tier"][0] in _text(refused)
    assert not Company.objects.filter(name="X").exists()

    created = _admin_company(staff_client, entity, name="Admin Co", custom_fields=json.dumps({"tier": "emea"}))
    assert created.status_code == 302, _text(created)[:2000]
    company = Company.objects.get(name="Admin Co")
    assert api.get(f"/companies/{company.pk}").json()["company"]["customFields"] == {"tier": "emea", "seats": None}

    form = staff_client.get(f"/admin/crm/company/{company.pk}/change/")
    assert "&quot;tier&quot;: &quot;emea&quot;" in form.content.decode() or '"tier": "emea"' in _text(form)
    changed = _admin_company(
        staff_client,
        entity,
        path=f"/admin/crm/company/{company.pk}/change/",
        name="Admin Co",
        custom_fields=json.dumps({"tier": "apac", "seats": "3.0"}),
    )
    assert changed.status_code == 302, _text(changed)[:2000]
    assert api.get(f"/companies/{company.pk}").json()["company"]["customFields"] == {"tier": "apac", "seats": "3"}


def test_admin_manages_definitions_through_the_service(api, staff_client, entity):
    response = staff_client.post(
        "/admin/crm/customfield/add/",
        {"entity": entity.pk, "object_type": "company", "key": "name", "label": "N", "type": "text", "options": "[]"},
    )
    assert response.status_code == 200 and "built-in" in _text(response)
    response = staff_client.post(
        "/admin/crm/customfield/add/",
        {"entity": entity.pk, "object_type": "company", "key": "code", "label": "Code", "type": "text", "options": ""},
    )
    assert response.status_code == 302, _text(response)[:2000]
    field = CustomField.objects.get(key="code")
    company = api.post("/companies", {"name": "A", "customFields": {"code": "C"}}).json()["company"]
    response = staff_client.post(f"/admin/crm/customfield/{field.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert api.get(f"/companies/{company['id']}").json()["company"]["customFields"] == {}
