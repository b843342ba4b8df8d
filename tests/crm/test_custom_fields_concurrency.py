"""Unique custom fields are enforced by PostgreSQL, also between concurrent requests."""

from __future__ import annotations

import threading

import pytest
from django.db import IntegrityError, connection, transaction

from crm.models import Company
from tests import factories


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_creates_with_one_unique_value_give_one_201_and_one_409(make_api):
    admin = make_api()
    field = admin.post(
        "/custom-fields", {"objectType": "company", "key": "vat", "label": "VAT", "type": "text", "unique": True}
    )
    assert field.status_code == 201, field.content
    # One key per thread: requests sharing a key would queue behind its `last_used_at` row lock.
    clients = {name: make_api() for name in ("A", "B")}
    barrier = threading.Barrier(2)
    results: list = []

    def create(name):
        try:
            barrier.wait(timeout=10)
            response = clients[name].post("/companies", {"name": name, "customFields": {"vat": "DE123"}})
            results.append((response.status_code, response.json()))
        finally:
            connection.close()

    try:
        threads = [threading.Thread(target=create, args=(name,)) for name in ("A", "B")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
            assert not thread.is_alive(), "a request thread is still running after 30 s"

        statuses = sorted(status for status, _ in results)
        assert statuses == [201, 409], results
        created = next(body for status, body in results if status == 201)
        conflict = next(body for status, body in results if status == 409)
        assert conflict["existingId"] == created["company"]["id"]
    finally:
        assert admin.delete(f"/custom-fields/{field.json()['customField']['id']}").status_code == 204


@pytest.mark.django_db
def test_the_database_itself_refuses_a_duplicate_written_past_the_service(api, entity):
    field = api.post(
        "/custom-fields", {"objectType": "company", "key": "vat", "label": "VAT", "type": "text", "unique": True}
    )
    storage_key = "f" + field.json()["customField"]["id"].replace("-", "")
    factories.make_company(entity, name="A", custom_fields={storage_key: "DE1"})
    with pytest.raises(IntegrityError), transaction.atomic():
        Company.objects.create(entity=entity, name="B", custom_fields={storage_key: "DE1"})
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_indexes WHERE indexname = %s", ["cf_uniq_" + storage_key[1:]])
        assert cursor.fetchone()[0] == 1
    api.delete(f"/custom-fields/{field.json()['customField']['id']}")
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_indexes WHERE indexname = %s", ["cf_uniq_" + storage_key[1:]])
        assert cursor.fetchone()[0] == 0
