"""Helpers for driving the API in tests."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from django.test import Client


class ApiClient:
    """Drives `/api/...` over Django's HTTP test client with a real API key.

    `entityId` is added to the query string unless the test passes `entity_id=None` (or another
    value); bodies are sent as JSON.
    """

    def __init__(self, client: Client, *, secret: str | None, entity, user, api_key=None, prefix="/api/crm"):
        self.client = client
        self.secret = secret
        self.entity = entity
        self.user = user
        self.api_key = api_key
        self.prefix = prefix

    def _url(self, path: str) -> str:
        return path if path.startswith("/api/") else f"{self.prefix}{path}"

    def _headers(self, headers: dict | None) -> dict:
        merged = {}
        if self.secret:
            merged["Authorization"] = f"Bearer {self.secret}"
        merged.update(headers or {})
        return merged

    def _query(self, params: dict | None, entity_id) -> dict:
        query = dict(params or {})
        if entity_id is ...:
            entity_id = str(self.entity.pk)
        if entity_id is not None:
            query.setdefault("entityId", str(entity_id))
        return query

    def get(self, path: str, params: dict | None = None, *, entity_id: Any = ..., headers=None):
        return self.client.get(self._url(path), self._query(params, entity_id), headers=self._headers(headers))

    def _send(self, method: str, path: str, body, params, entity_id, headers, raw: str | bytes | None, content_type):
        query = urlencode(self._query(params, entity_id), doseq=True)
        url = self._url(path) + (f"?{query}" if query else "")
        data = raw if raw is not None else (json.dumps(body) if body is not None else "")
        return getattr(self.client, method)(url, data=data, content_type=content_type, headers=self._headers(headers))

    def post(
        self,
        path,
        body=None,
        *,
        params=None,
        entity_id=...,
        headers=None,
        raw=None,
        content_type="application/json",
    ):
        return self._send("post", path, body, params, entity_id, headers, raw, content_type)

    def patch(
        self,
        path,
        body=None,
        *,
        params=None,
        entity_id=...,
        headers=None,
        raw=None,
        content_type="application/json",
    ):
        return self._send("patch", path, body, params, entity_id, headers, raw, content_type)

    def delete(
        self,
        path,
        body=None,
        *,
        params=None,
        entity_id=...,
        headers=None,
        raw=None,
        content_type="application/json",
    ):
        return self._send("delete", path, body, params, entity_id, headers, raw, content_type)


def assert_error(response, status: int) -> dict:
    """The response is `status` with the JSON error envelope; returns the body."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    return body
