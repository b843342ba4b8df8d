"""One resolver of a request's entity: the API (sessions and keys) and the pages answer the same
way for the same entity ids (`axiomatic.tenancy.resolve`)."""

from __future__ import annotations

import uuid

import pytest

pytestmark = pytest.mark.django_db

CASES = {
    "malformed": (lambda entity, other: {"query": "not-a-uuid"}, 400),
    "disagreeing": (lambda entity, other: {"query": str(entity.pk), "header": str(uuid.uuid4())}, 400),
    "not_a_member": (lambda entity, other: {"query": str(other.pk)}, 403),
    "no_such_entity": (lambda entity, other: {"query": str(uuid.uuid4())}, 403),
    "member": (lambda entity, other: {"query": str(entity.pk)}, 200),
}


def _get(client, path, names):
    headers = {"HTTP_X_ENTITY_ID": names["header"]} if "header" in names else {}
    return client.get(path, {"entityId": names["query"]}, **headers)


@pytest.mark.parametrize("case", CASES)
def test_the_api_and_the_pages_resolve_the_entity_alike(case, signed_in, api, entity, other_entity):
    build, status = CASES[case]
    names = build(entity, other_entity)
    assert _get(signed_in, "/api/crm/companies", names).status_code == status  # session
    assert _get(signed_in, "/crm/companies", names).status_code == status  # page
    key_status = api.client.get(
        "/api/crm/companies",
        {"entityId": names["query"]},
        HTTP_AUTHORIZATION=f"Bearer {api.secret}",
        **({"HTTP_X_ENTITY_ID": names["header"]} if "header" in names else {}),
    ).status_code
    assert key_status == status
