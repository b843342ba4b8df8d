"""The API contract, checked the same way for every resource of `tests/contract.py`.

Each test runs over every resource it applies to; a resource's own test module keeps only what is
specific to it (validation, ordering, filters, side effects).
"""

from __future__ import annotations

import uuid

import pytest

from apikeys.models import SCOPES
from tests.contract import RESOURCES, tenant_rows
from tests.helpers import assert_error


def resources(applies=lambda resource: True) -> list:
    return [pytest.param(resource, id=resource.name) for resource in RESOURCES if applies(resource)]


def more_rows(resource, entity, row, n: int) -> list[str]:
    """`n` more rows in the list `row` is in; their ids."""
    return [resource.make(entity, row)["pk"] for _ in range(n)]


def needed_scope(resource, op) -> str:
    return f"{'read' if op.method == 'get' else 'write'}:{resource.family}"


def label(op, response) -> str:
    return f"{op.method.upper()} {op.path}: {response.status_code} {response.content[:300]!r}"


# --- authentication, scopes, entity --------------------------------------------------------------------


@pytest.mark.parametrize("resource", resources())
def test_each_route_works_with_only_its_own_scope(resource, make_api, entity):
    """The calls the other tests send are valid, so their 4xx can only come from the rule under test."""
    for op in resource.ops:
        client = make_api(scopes=(needed_scope(resource, op),))
        response = op.send(client, resource.make(entity))  # a fresh row: no delete hides another route
        assert response.status_code == op.ok, label(op, response)


@pytest.mark.parametrize("resource", resources())
def test_no_credentials_is_401_with_a_bearer_challenge(resource, make_api, entity):
    own = resource.make(entity)
    before = tenant_rows(entity)
    anonymous = make_api()
    anonymous.secret = None
    for op in resource.ops:
        response = op.send(anonymous, own)
        assert response.status_code == 401, label(op, response)
        assert_error(response, 401)
        assert response["WWW-Authenticate"].startswith("Bearer")
    assert tenant_rows(entity) == before


@pytest.mark.parametrize("resource", resources())
def test_a_key_without_the_routes_scope_is_403_naming_it(resource, make_api, entity):
    """Every other scope (the other action of the family, both of the other family) is not enough."""
    own = resource.make(entity)
    before = tenant_rows(entity)
    for op in resource.ops:
        needed = needed_scope(resource, op)
        response = op.send(make_api(scopes=tuple(s for s in SCOPES if s != needed)), own)
        assert response.status_code == 403, label(op, response)
        assert needed in assert_error(response, 403)["error"]
    assert tenant_rows(entity) == before


@pytest.mark.parametrize("resource", resources())
def test_entity_id_is_required_and_must_be_the_keys(resource, api, entity, other_entity):
    own = resource.make(entity)
    before = tenant_rows(entity)
    for op in resource.ops:
        missing = op.send(api, own, entity_id=None)
        assert missing.status_code == 400, label(op, missing)
        assert "entityId" in assert_error(missing, 400)["error"]
        foreign = op.send(api, own, entity_id=other_entity.pk)
        assert foreign.status_code == 403, label(op, foreign)
        assert_error(foreign, 403)
    assert tenant_rows(entity) == before


@pytest.mark.parametrize("resource", resources(lambda r: any(op.has_path_ids for op in r.ops)))
def test_another_entitys_ids_in_the_path_are_404_like_unknown_ids(resource, api, entity, other_entity):
    own, theirs = resource.make(entity), resource.make(other_entity)
    unknown = {name: str(uuid.uuid4()) if isinstance(value, str) else value for name, value in theirs.items()}
    before = tenant_rows(other_entity)
    for op in (op for op in resource.ops if op.has_path_ids):
        foreign = op.send(api, theirs, body_row=own)
        assert foreign.status_code == 404, label(op, foreign)
        assert assert_error(foreign, 404) == assert_error(op.send(api, unknown, body_row=own), 404)
    assert tenant_rows(other_entity) == before


# --- request bodies ------------------------------------------------------------------------------------

UNKNOWN = {"bogusField": 1, "entity_id": "snake_case is not entityId"}


@pytest.mark.parametrize("resource", resources(lambda r: any(op.body is not None for op in r.ops)))
def test_unknown_body_fields_are_400_naming_them(resource, api, entity):
    own = resource.make(entity)
    before = tenant_rows(entity)
    for op in (op for op in resource.ops if op.body is not None):
        response = op.send(api, own, extra=UNKNOWN)
        assert response.status_code == 400, label(op, response)
        body = assert_error(response, 400)
        assert set(body["details"]) == set(UNKNOWN), label(op, response)
        assert all(name in body["error"] for name in UNKNOWN), label(op, response)
    assert tenant_rows(entity) == before


@pytest.mark.parametrize("resource", resources(lambda r: r.read_only))
def test_read_only_fields_are_ignored_on_create_and_update(resource, api, entity):
    own = resource.make(entity)
    create, update = resource.role("create"), resource.role("update")

    response = create.send(api, own, extra=resource.read_only)
    assert response.status_code == 201, label(create, response)
    created = response.json()[resource.item]
    for name, sent in resource.read_only.items():
        assert created[name] != sent, f"create took read-only {name}={sent!r}"

    plain = update.send(api, own)
    assert plain.status_code == 200, label(update, plain)
    response = update.send(api, own, extra=resource.read_only)
    assert response.status_code == 200, label(update, response)
    before, after = plain.json()[resource.item], response.json()[resource.item]
    for name, sent in resource.read_only.items():
        if name == "updatedAt":
            assert after[name] != sent
        else:
            assert after[name] == before[name], f"update took read-only {name}={sent!r}"


# --- lists ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("resource", resources(lambda r: r.plural))
def test_list_envelope_pages_and_entity(resource, api, entity, other_entity):
    own = resource.make(entity)
    expected = {own["pk"], *more_rows(resource, entity, own, 2)}
    foreign = resource.make(other_entity)["pk"]
    total = len(expected) + resource.preexisting
    op = resource.ops[0]

    if not resource.paginated:
        response = op.send(api, own)
        assert response.status_code == 200, label(op, response)
        assert list(response.json()) == [resource.plural]
        ids = [item["id"] for item in response.json()[resource.plural]]
    else:
        ids, page, more = [], 0, True
        while more:
            page += 1
            response = op.send(api, own, params={"page": page, "pageSize": 2})
            assert response.status_code == 200, label(op, response)
            body = response.json()
            assert set(body) == {resource.plural, "page", "pageSize", "total", "totalExact", "hasMore", "nextCursor"}
            assert (body["page"], body["pageSize"], body["total"]) == (page, 2, total)
            assert len(body[resource.plural]) == min(2, total - 2 * (page - 1))
            ids += [item["id"] for item in body[resource.plural]]
            more = body["hasMore"]
            assert more == (2 * page < total)
        bad = assert_error(op.send(api, own, params={"pageSize": 0}), 400)
        assert list(bad["details"]) == ["pageSize"]

    assert len(ids) == len(set(ids)) == total
    assert expected <= set(ids)
    assert foreign not in ids


@pytest.mark.parametrize("size", [5, 200])
@pytest.mark.parametrize("resource", resources(lambda r: r.plural))
def test_list_query_count_does_not_grow(resource, size, api, entity, django_assert_max_num_queries):
    """Pinned at today's count. A paginated list is asked for pages of 5 and 200 of 20 rows; a list that
    is not paginated holds 5 rows, then 20."""
    own = resource.make(entity)
    rows = 20 if resource.paginated else min(size, 20)
    more_rows(resource, entity, own, rows - 1)
    params = {"pageSize": size} if resource.paginated else None
    op = resource.ops[0]
    op.send(api, own, params=params)  # the key's first use records lastUsedAt: measure the steady state
    with django_assert_max_num_queries(resource.list_queries):
        response = op.send(api, own, params=params)
    assert response.status_code == 200, label(op, response)
    shown = rows + resource.preexisting
    assert len(response.json()[resource.plural]) == (min(size, shown) if resource.paginated else shown)
