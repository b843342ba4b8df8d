"""Contacts and companies written by the batch engine get their duplicate pairs too: a task queued
when the batch commits finds them (eager here, as without a broker)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_batch_create_finds_its_pairs(api, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    items = [{"firstName": "A", "phone": "030 1234567"}, {"firstName": "B", "phone": "0301234567"}]
    response = api.post("/contacts/batch", {"operation": "create", "items": items})
    assert response.status_code == 200, response.content
    pairs = api.get("/contacts/duplicates").json()["duplicates"]
    assert [p["reasons"] for p in pairs] == [["same_phone"]]
    companies = [{"name": "Acme, Inc."}, {"name": "ACME"}]
    assert api.post("/companies/batch", {"operation": "create", "items": companies}).status_code == 200
    assert [p["reasons"] for p in api.get("/companies/duplicates").json()["duplicates"]] == [["same_name"]]


def test_the_refresh_waits_behind_every_other_task_on_the_broker(entity, transactional_db):
    """The refresh is published at the broker's lowest priority (kombu's Redis list `<queue>\\x06\\x169`,
    which a worker reads only when the plain queue is empty): an import's continuation queued after
    it is still taken first."""
    import redis

    from crm.services.duplicates import _refresh_enqueue
    from crm.tasks import check_stuck_outbound_emails
    from tests.crm.email.conftest import BROKER_URL, QUEUE, celery_on_broker

    client = redis.Redis.from_url(BROKER_URL)
    lowest = f"{QUEUE}\x06\x169"
    try:
        with celery_on_broker(BROKER_URL):
            _refresh_enqueue(str(entity.pk), "contact", [])
            check_stuck_outbound_emails.apply_async()
        assert client.llen(lowest) == 1
        assert client.llen(QUEUE) == 1
        first = client.lindex(QUEUE, 0)
        assert b"crm.check_stuck_outbound_emails" in first
        assert b"crm.refresh_duplicates" in client.lindex(lowest, 0)
    finally:
        client.delete(QUEUE, lowest, f"{QUEUE}\x06\x163", f"{QUEUE}\x06\x166")
