"""A merge as a webhook receiver sees it (a real worker delivering to a receiver on 127.0.0.1):
the survivor's `updated` and the merged record's `deleted` naming `mergedInto`, signed, in seq order,
each the feed's own change object."""

from __future__ import annotations

import pytest

from tests.webhooks.test_delivery import feed_changes, make_endpoint, verified

pytestmark = [pytest.mark.worker]


def test_a_merge_reaches_webhooks_as_survivor_updated_and_merged_deleted(api, receiver, hook_worker):
    survivor = api.post("/companies", {"name": "Acme"}).json()["company"]["id"]
    merged = api.post("/companies", {"name": "ACME Inc", "phone": "030 1234567"}).json()["company"]["id"]
    _, secret = make_endpoint(api, receiver, eventTypes=["company.*"])
    assert api.post(f"/companies/{survivor}/merge", {"mergeId": merged}).status_code == 200
    items = receiver.wait(2, timeout=10)
    bodies = [verified(secret, item) for item in items]
    assert [(b["type"], b["objectId"]) for b in bodies] == [("company.updated", survivor), ("company.deleted", merged)]
    assert bodies[0]["data"]["phone"] == "030 1234567" and bodies[0]["previous"]["phone"] == ""
    assert bodies[1]["data"] == {"id": merged, "mergedInto": survivor}
    assert bodies[0]["seq"] < bodies[1]["seq"]
    feed = feed_changes(api)
    assert all(body == feed[body["id"]] for body in bodies)
