"""`/crm/import` without a browser: refusals shown on the page, staged uploads never run on their
own, another entity's import is 404; and the import lists' query counts do not grow with rows."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext

from crm.models import Import, ImportRowError
from crm.services.imports import import_claim
from tests import factories
from tests.crm.bulk_helpers import upload

pytestmark = pytest.mark.django_db


def _post(client, entity, content: bytes, object_type: str = "contact"):
    return client.post(
        f"/crm/import?entityId={entity.pk}",
        {"objectType": object_type, "file": SimpleUploadedFile("x.csv", content, content_type="text/csv")},
    )


def test_a_refused_upload_is_shown_on_the_page(signed_in, entity):
    response = _post(signed_in, entity, b"name\n" + "Caf\u00e9\n".encode("latin-1"), "company")
    assert response.status_code == 400
    assert "not valid UTF-8 (line 2)" in response.content.decode()
    assert not Import.objects.exists()


def test_a_staged_upload_waits_for_its_mapping_and_blocks_nobody(signed_in, api, entity):
    response = _post(signed_in, entity, b"First Name,Email\nAda,ada@example.com\n")
    assert response.status_code == 302
    staged = Import.objects.get()
    assert staged.staged and staged.status == "queued"
    assert import_claim(import_id=staged.pk, token=None) is None
    page = signed_in.get(response["Location"]).content.decode()
    assert 'name="column-0"' in page and "ada@example.com" in page
    other = upload(api, "name\nA\n", objectType="company", matchOn="none").json()["import"]
    assert import_claim(import_id=other["id"], token=None) is not None  # the staged one holds no place


def test_another_entitys_import_page_is_404(signed_in, entity, other_entity):
    theirs = Import.objects.create(entity=other_entity, object_type="company", file_name="x.csv")
    for path in ("", "/progress"):
        assert signed_in.get(f"/crm/import/{theirs.pk}{path}?entityId={entity.pk}").status_code == 404
    assert signed_in.post(f"/crm/import/{theirs.pk}/run?entityId={entity.pk}").status_code == 404


def test_import_lists_take_a_constant_number_of_queries(api, entity, user):
    def make(n: int) -> None:
        for _ in range(n):
            job = Import.objects.create(entity=entity, object_type="company", file_name="x.csv", created_by=user)
            ImportRowError.objects.bulk_create(
                ImportRowError(entity=entity, job=job, row=row, column="name", message="Bad", cells=["x"])
                for row in range(1, 6)
            )

    make(2)
    job = Import.objects.first()
    api.get("/imports")  # the key's first use stamps lastUsedAt
    with CaptureQueriesContext(connection) as few:
        assert api.get("/imports").status_code == 200
        assert api.get(f"/imports/{job.pk}/errors").status_code == 200
    make(20)
    ImportRowError.objects.bulk_create(
        ImportRowError(entity=entity, job=job, row=row, column="name", message="Bad", cells=["x"])
        for row in range(6, 60)
    )
    with CaptureQueriesContext(connection) as many:
        assert api.get("/imports").json()["total"] == 22
        assert api.get(f"/imports/{job.pk}/errors").json()["total"] == 59
    assert len(many) == len(few)


def test_the_import_page_lists_the_last_imports(signed_in, entity, user):
    factories.make_company(entity, name="Unrelated")
    Import.objects.create(entity=entity, object_type="lead", file_name="deals.csv", created_by=user, total_rows=3)
    page = signed_in.get(f"/crm/import?entityId={entity.pk}").content.decode()
    assert "deals.csv" in page and "0 / 3" in page
