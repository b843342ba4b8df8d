"""Custom field values in the change feed and webhook bodies: `previous.customFields` names only
the keys that changed (CONTRACT §13)."""

from __future__ import annotations

import pytest
from standardwebhooks import Webhook

from tests.webhooks.test_delivery import feed_changes, make_endpoint
from tests.webhooks.test_feed import feed_since, get, start  # noqa: F401  (fixture)

OPTIONS = [{"value": "emea", "label": "EMEA"}, {"value": "apac", "label": "APAC"}]


def define(api, key, kind, object_type="company", **extra):
    response = api.post("/custom-fields", {"objectType": object_type, "key": key, "label": key, "type": kind, **extra})
    assert response.status_code == 201, response.content


def test_updates_carry_the_values_and_previous_names_only_the_changed_keys(api, start):  # noqa: F811
    define(api, "tier", "select", options=OPTIONS)
    define(api, "seats", "number")
    define(api, "code", "text")
    created = api.post("/companies", {"name": "Acme", "customFields": {"tier": "emea", "seats": 5}}).json()["company"]
    api.patch(f"/companies/{created['id']}", {"customFields": {"tier": "apac", "code": "C-1"}})
    changes_, _ = feed_since(api, start)
    assert [c["type"] for c in changes_] == ["company.created", "company.updated"]
    assert changes_[0]["data"]["customFields"] == {"tier": "emea", "seats": "5", "code": None}
    assert changes_[1]["data"] == get(api, f"/companies/{created['id']}", "company")
    assert changes_[1]["previous"] == {
        "customFields": {"tier": "emea", "code": None},
        "updatedAt": created["updatedAt"],
    }


def test_contact_and_lead_changes_name_their_custom_fields(api, start):  # noqa: F811
    define(api, "shoe", "number", object_type="contact")
    define(api, "po", "text", object_type="lead")
    contact = api.post("/contacts", {"firstName": "Ada", "customFields": {"shoe": 38}}).json()["contact"]
    lead = api.post("/leads", {"title": "Deal"}).json()["lead"]
    api.patch(f"/contacts/{contact['id']}", {"customFields": {"shoe": None}})
    api.patch(f"/leads/{lead['id']}", {"customFields": {"po": "PO-9"}})
    changes_, _ = feed_since(api, start)
    updated = {c["objectType"]: c for c in changes_ if c["type"].endswith(".updated")}
    assert updated["contact"]["previous"]["customFields"] == {"shoe": "38"}
    assert updated["lead"]["previous"]["customFields"] == {"po": None}
    assert updated["lead"]["data"]["customFields"] == {"po": "PO-9"}


@pytest.mark.worker
def test_webhook_bodies_carry_custom_fields_and_previous(api, receiver, hook_worker):
    define(api, "tier", "select", options=OPTIONS)
    _endpoint, secret = make_endpoint(api, receiver)
    company = api.post("/companies", {"name": "Acme", "customFields": {"tier": "emea"}}).json()["company"]
    api.patch(f"/companies/{company['id']}", {"customFields": {"tier": "apac"}})
    created, updated = receiver.wait(2, timeout=10)
    bodies = [Webhook(secret).verify(item.body, item.headers) for item in (created, updated)]
    assert bodies[0]["data"]["customFields"] == {"tier": "emea"}
    assert bodies[1]["data"]["customFields"] == {"tier": "apac"}
    assert bodies[1]["previous"]["customFields"] == {"tier": "emea"}
    assert bodies[1] == feed_changes(api)[bodies[1]["id"]]
