"""Helpers shared by the import, export and batch tests."""

from __future__ import annotations

import csv
import io
import json
from urllib.parse import urlencode

from django.core.files.uploadedfile import SimpleUploadedFile


def csv_text(rows: list[list]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue()


def upload(api, content: str | bytes, *, name: str = "people.csv", **fields):
    """POST /imports as multipart (the way clients send files), with the API key."""
    data = content.encode() if isinstance(content, str) else content
    form = {"file": SimpleUploadedFile(name, data, content_type="text/csv")}
    for key, value in fields.items():
        form[key] = (
            json.dumps(value) if isinstance(value, dict) else str(value).lower() if isinstance(value, bool) else value
        )
    query = urlencode({"entityId": str(api.entity.pk)})
    return api.client.post(f"/api/crm/imports?{query}", data=form, headers=api._headers(None))


def run_import(api, capture, content, **fields) -> dict:
    """Upload and run the import in-process (the demo's eager Celery); returns the finished job."""
    with capture(execute=True):
        response = upload(api, content, **fields)
    assert response.status_code == 202, response.content
    job = response.json()["import"]
    return api.get(f"/imports/{job['id']}").json()["import"]


def read_csv(response) -> list[list[str]]:
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return list(csv.reader(io.StringIO(body.decode("utf-8"))))
