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
