"""Merges racing each other over real connections (§16: "two merges racing over the same records
never lose a row"), and what integrations see afterwards in the committed change feed and webhooks."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from crm.models import Activity, Contact, Lead
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


def race(calls) -> list[int]:
    """Run the (client, path, body) calls at once, each on its own thread and connection."""
    barrier = threading.Barrier(len(calls))
    statuses: list[int] = []

    def run(client, path, body):
        try:
            barrier.wait(timeout=10)
            statuses.append(client.post(path, body).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=call) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive(), "a merge is still running after 60 s"
    return sorted(statuses)


def _contact_with_rows(entity, n: int = 3) -> Contact:
    contact = factories.make_contact(entity)
    for _ in range(n):
        factories.make_lead(entity, contact=contact)
        factories.make_activity(entity, contact=contact)
    return contact


@pytest.mark.parametrize("round_", range(3))
def test_a_into_b_racing_b_into_a(make_api, round_):
    api = make_api()
    a, b = _contact_with_rows(api.entity), _contact_with_rows(api.entity)
    statuses = race(
        [
            (make_api(), f"/contacts/{a.pk}/merge", {"mergeId": str(b.pk)}),
            (make_api(), f"/contacts/{b.pk}/merge", {"mergeId": str(a.pk)}),
        ]
    )
    assert statuses == [200, 404]
    (survivor,) = Contact.objects.for_entity(api.entity).filter(pk__in=[a.pk, b.pk])
    assert Lead.objects.filter(contact=survivor).count() == 6
    assert Activity.objects.filter(contact=survivor).count() == 6
    assert not Lead.objects.filter(contact__isnull=True).exists()


@pytest.mark.parametrize("round_", range(3))
def test_a_and_c_both_taking_b(make_api, round_):
    api = make_api()
    a, b, c = (_contact_with_rows(api.entity) for _ in range(3))
    statuses = race(
        [
            (make_api(), f"/contacts/{a.pk}/merge", {"mergeId": str(b.pk)}),
            (make_api(), f"/contacts/{c.pk}/merge", {"mergeId": str(b.pk)}),
        ]
    )
    assert statuses == [200, 404]
    assert not Contact.objects.filter(pk=b.pk).exists()
    assert Lead.objects.filter(contact__in=[a, c]).count() == 9
    # B's leads went to exactly one of the two.
    assert {Lead.objects.filter(contact=a).count(), Lead.objects.filter(contact=c).count()} == {3, 6}


def test_feed_carries_survivor_updated_and_merged_deleted(make_api):
    api = make_api()
    survivor, merged = (
        factories.make_company(api.entity, name="Acme"),
        factories.make_company(api.entity, phone="123456"),
    )
    cursor = api.get("/changes", {"cursor": "latest"}).json()["nextCursor"]
    assert api.post(f"/companies/{survivor.pk}/merge", {"mergeId": str(merged.pk)}).status_code == 200
    feed = api.get("/changes", {"cursor": cursor}).json()["changes"]
    by_type = {change["type"]: change for change in feed}
    assert by_type["company.updated"]["objectId"] == str(survivor.pk)
    assert by_type["company.updated"]["data"]["phone"] == "123456"
    assert by_type["company.updated"]["previous"] == {
        "phone": "",
        "updatedAt": by_type["company.updated"]["previous"]["updatedAt"],
    }
    deleted = by_type["company.deleted"]
    assert deleted["objectId"] == str(merged.pk)
    assert deleted["data"] == {"id": str(merged.pk), "mergedInto": str(survivor.pk)}
    assert [c["seq"] for c in feed] == sorted(c["seq"] for c in feed)
