import pytest
from tests.webhooks.conftest import *  # noqa

def test_smoke(api, numbered):
    r = api.post("/companies", {"name": "Acme"})
    assert r.status_code == 201, r.content
    cid = r.json()["company"]["id"]
    r = api.patch(f"/companies/{cid}", {"name": "Acme 2"})
    assert r.status_code == 200
    feed = api.get("/changes")
    assert feed.status_code == 200, feed.content
    body = feed.json()
    import json; print(json.dumps(body, indent=1)[:3000])
    types = [c["type"] for c in body["changes"]]
    assert types[-2:] == ["company.created", "company.updated"]
