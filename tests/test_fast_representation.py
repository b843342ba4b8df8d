"""The fast list path gives exactly what DRF's serializers give, on every list of the API."""

from __future__ import annotations

import json

import pytest
from rest_framework.serializers import BaseSerializer

from axiomatic.api.serializers import ApiSerializerMixin
from crm.models import OutboundEmailConnection
from tests import factories

LISTS = [
    "/companies",
    "/contacts",
    "/companies/{company}/contacts",
    "/contacts/{contact}/company-memberships",
    "/pipeline-stages",
    "/leads",
    "/leads/{lead}/timeline",
    "/activities",
    "/tasks",
    "/outbound-email-connections",
    "/api/marketing/lists",
    "/api/marketing/lists/{list}/members",
]


@pytest.fixture
def rows(api, entity, user):
    company = factories.make_company(entity, name="Ünïcode & Co", domain="acme.example", owner=user, notes="a\u2028b")
    contact = factories.make_contact(entity, first_name="Zoë", email="zoe@acme.example", company=company)
    lead = api.post("/leads", {"title": "Deal", "value": 1234.5, "companyId": str(company.pk)}).json()["lead"]
    api.patch(f"/leads/{lead['id']}/stage", {"stage": "won"})
    api.post(
        f"/leads/{lead['id']}/activities", {"type": "task", "subject": "Call back", "dueAt": "2030-01-01T10:00:00Z"}
    )
    connection = OutboundEmailConnection(
        entity=entity, channel="gmail", email_address="sales@acme.example", connected_by=user
    )
    connection.set_tokens(access_token="a", refresh_token="r", expires_at=None)
    connection.save()
    marketing_list = factories.make_list(entity, name="News")
    factories.make_list_member(marketing_list, contact)
    return {"company": company.pk, "contact": contact.pk, "lead": lead["id"], "list": marketing_list.pk}


@pytest.mark.parametrize("template", LISTS)
def test_fast_lists_equal_drf_lists(api, rows, monkeypatch, template):
    path = template.format(**rows)
    fast = api.get(path)
    assert fast.status_code == 200, fast.content
    monkeypatch.setattr(ApiSerializerMixin, "many_init", classmethod(BaseSerializer.many_init.__func__))
    monkeypatch.setattr("axiomatic.api.fast.OrjsonRenderer.render", _stdlib_render)
    slow = api.get(path)
    assert slow.status_code == 200
    assert fast.json() == slow.json()
    assert any(body for body in fast.json().values() if isinstance(body, list)), "the list under test is empty"


def _stdlib_render(self, data, accepted_media_type=None, renderer_context=None):
    from rest_framework.renderers import JSONRenderer

    return JSONRenderer().render(data, accepted_media_type, renderer_context)


def test_orjson_writes_what_the_standard_encoder_writes(api, rows):
    body = api.get("/companies").content
    assert json.loads(body)["companies"][0]["name"] == "Ünïcode & Co"
    assert b"\\u00dc" not in body  # UTF-8, not ASCII escapes, as before
