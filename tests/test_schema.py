"""Documentation endpoints and the rule that every API view is entity-scoped."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework import serializers

from axiomatic.api.viewsets import EntityScopedViewSet, ListMixin
from axiomatic.mounts import api_mounts
from crm.models import Company

COMPANY_LIST = "/api/crm/companies"
COMPANY_ITEM = "/api/crm/companies/{companyId}"


@pytest.fixture(scope="module")
def schema(django_db_setup, django_db_blocker) -> dict:
    """Generated once per module: building the document is the slow part, and it only reads."""
    with django_db_blocker.unblock():
        response = Client().get("/api/schema", {"format": "json"})
    assert response.status_code == 200, response.content[:300]
    return response.json()


def resolve(schema: dict, node: dict) -> dict:
    """Follow `$ref`s into components until a concrete schema is reached."""
    while "$ref" in node:
        name = node["$ref"].removeprefix("#/components/schemas/")
        node = schema["components"]["schemas"][name]
    return node


def json_body(schema: dict, container: dict) -> dict:
    return resolve(schema, container["content"]["application/json"]["schema"])


# --- /api/schema ------------------------------------------------------------------------------


def test_schema_is_openapi_3_json_with_format_query(schema):
    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"]
    assert COMPANY_LIST in schema["paths"]


def test_schema_is_served_as_json_for_a_json_accept_header(client, db):
    response = client.get("/api/schema", headers={"Accept": "application/vnd.oai.openapi+json"})
    assert response.status_code == 200
    assert response.json()["openapi"].startswith("3.")


def test_schema_defaults_to_yaml(client, db):
    response = client.get("/api/schema")
    assert response.status_code == 200
    assert re.search(rb"^openapi: ['\"]?3\.", response.content, re.MULTILINE)


def test_schema_needs_no_credentials(client, db):
    assert client.get("/api/schema", {"format": "json"}).status_code == 200


def test_schema_declares_the_bearer_auth_scheme(schema):
    bearer = schema["components"]["securitySchemes"]["bearerAuth"]
    assert bearer["type"] == "http"
    assert bearer["scheme"] == "bearer"


def test_company_operations_require_bearer_auth_and_the_entity_id_parameter(schema):
    operations = [
        (COMPANY_LIST, "get"),
        (COMPANY_LIST, "post"),
        (COMPANY_ITEM, "get"),
        (COMPANY_ITEM, "patch"),
    ]
    for path, method in operations:
        operation = schema["paths"][path][method]
        assert {"bearerAuth": []} in operation["security"], (path, method)
        entity_params = [p for p in operation["parameters"] if p["name"] == "entityId"]
        assert len(entity_params) == 1, (path, method)
        assert entity_params[0]["in"] == "query"
        assert entity_params[0]["required"] is True
        assert entity_params[0]["schema"]["format"] == "uuid"


def test_company_item_path_uses_the_seeds_parameter_name(schema):
    operation = schema["paths"][COMPANY_ITEM]["get"]
    path_params = [p for p in operation["parameters"] if p["in"] == "path"]
    assert [(p["name"], p["schema"].get("format")) for p in path_params] == [("companyId", "uuid")]


def test_company_list_documents_filters_and_pagination(schema):
    params = {p["name"]: p for p in schema["paths"][COMPANY_LIST]["get"]["parameters"]}
    assert {"role", "status", "ownerUserId", "q", "page", "pageSize", "limit"} <= set(params)
    assert set(params["role"]["schema"]["enum"]) == {"prospect", "customer", "vendor", "both"}
    assert set(params["status"]["schema"]["enum"]) == {"active", "inactive"}
    assert params["pageSize"]["schema"]["maximum"] == 200


COMPANY_FIELDS = {"id", "name", "role", "status", "ownerUserId", "domain", "country", "archivedAt", "createdAt"}


def test_company_list_response_schema_is_concrete(schema):
    body = json_body(schema, schema["paths"][COMPANY_LIST]["get"]["responses"]["200"])
    assert {"companies", "page", "pageSize", "total", "hasMore"} <= set(body["properties"])
    item = resolve(schema, body["properties"]["companies"]["items"])
    assert set(item["properties"]) >= COMPANY_FIELDS


@pytest.mark.parametrize(
    ("path", "method", "status"),
    [(COMPANY_LIST, "post", "201"), (COMPANY_ITEM, "get", "200"), (COMPANY_ITEM, "patch", "200")],
)
def test_company_item_responses_are_wrapped_and_concrete(schema, path, method, status):
    body = json_body(schema, schema["paths"][path][method]["responses"][status])
    assert list(body["properties"]) == ["company"]
    company = resolve(schema, body["properties"]["company"])
    assert set(company["properties"]) >= COMPANY_FIELDS


def test_company_create_request_schema_is_concrete(schema):
    operation = schema["paths"][COMPANY_LIST]["post"]
    body = json_body(schema, operation["requestBody"])
    assert "name" in body["required"]
    assert {"name", "role", "status", "ownerUserId", "domain", "country", "notes"} <= set(body["properties"])
    assert not {"id", "createdAt", "archivedAt"} & set(body["properties"]), "read-only fields are not input"
    assert body["properties"]["name"]["maxLength"] == 200


def test_company_patch_request_schema_is_concrete_and_optional(schema):
    body = json_body(schema, schema["paths"][COMPANY_ITEM]["patch"]["requestBody"])
    assert {"name", "status", "domain"} <= set(body["properties"])
    assert not body.get("required")


@pytest.mark.parametrize(("path", "method"), [(COMPANY_LIST, "get"), (COMPANY_LIST, "post"), (COMPANY_ITEM, "patch")])
def test_company_errors_are_documented_with_the_envelope(schema, path, method):
    responses = schema["paths"][path][method]["responses"]
    for status in ("400", "401", "403", "429"):
        error = json_body(schema, responses[status])
        assert "error" in error["properties"], (path, method, status)
    if "{" in path:
        assert "error" in json_body(schema, responses["404"])["properties"]


def test_every_operation_has_concrete_response_schemas(schema):
    empty = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if method not in ("get", "post", "patch", "put", "delete"):
                continue
            for status, response in operation["responses"].items():
                if status == "204":
                    continue
                if set(response.get("content", {})) == {"text/csv"}:
                    continue  # a CSV download (the exports): a string by nature
                content = response.get("content", {}).get("application/json")
                body = resolve(schema, content["schema"]) if content else {}
                if not (body.get("properties") or body.get("items") or body.get("oneOf") or body.get("allOf")):
                    empty.append(f"{method.upper()} {path} {status}")
    assert empty == []


# --- /api/docs --------------------------------------------------------------------------------

_ASSET = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)


def test_docs_page_is_html_with_only_local_assets(client, db):
    response = client.get("/api/docs")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assets = _ASSET.findall(html)
    assert any(asset.endswith(".js") for asset in assets)
    assert any(asset.endswith(".css") for asset in assets)
    remote = [asset for asset in assets if re.match(r"^(https?:)?//", asset, re.IGNORECASE)]
    assert remote == []
    assert not re.search(r"https?://[^\s\"']+\.(js|css)\b", html), "no CDN URLs anywhere in the page"


def test_docs_assets_are_served_by_the_app(client, db):
    html = client.get("/api/docs").content.decode()
    local = [asset for asset in _ASSET.findall(html) if asset.startswith("/static/")]
    assert local
    for asset in local:
        response = client.get(asset)
        assert response.status_code == 200, asset
        assert b"".join(response.streaming_content if response.streaming else [response.content])


def test_docs_point_at_the_local_schema(client, db):
    assert "/api/schema" in client.get("/api/docs").content.decode()


# --- Every API view is entity-scoped -----------------------------------------------------------


def _api_routes(patterns, prefix=""):
    for pattern in patterns:
        route = prefix + str(pattern.pattern).lstrip("^").rstrip("$").replace("\\Z", "")
        if isinstance(pattern, URLResolver):
            yield from _api_routes(pattern.url_patterns, route)
        elif isinstance(pattern, URLPattern):
            yield route, pattern


SCOPED_PREFIXES = tuple(mount.prefix.lstrip("/") for mount in api_mounts())  # as the apps registered them


def test_every_crm_and_marketing_route_uses_the_entity_scoped_base_viewset():
    routes = [(route, p) for route, p in _api_routes(get_resolver().url_patterns) if route.startswith(SCOPED_PREFIXES)]
    assert any(route.startswith("api/crm/companies") for route, _ in routes), "the walk found no company routes"
    offenders = []
    for route, pattern in routes:
        view_class = getattr(pattern.callback, "cls", None)
        if not (isinstance(view_class, type) and issubclass(view_class, EntityScopedViewSet)):
            offenders.append(f"{route} -> {view_class or pattern.callback}")
    assert offenders == []


def test_the_route_walk_would_notice_a_plain_view():
    from tests import error_urls

    routes = dict(_api_routes(error_urls.urlpatterns))
    plain = routes["api/test-explode-plain"]
    assert getattr(plain.callback, "cls", None) is None


@pytest.mark.parametrize("sealed", ["get_queryset", "authentication_classes", "permission_classes"])
def test_subclass_overriding_the_scoping_is_refused_at_definition(sealed):
    body = {
        "queryset": Company.objects.all(),
        sealed: (lambda self: Company.objects.all()) if sealed == "get_queryset" else [],
    }
    with pytest.raises(TypeError, match=sealed):
        type("BypassViewSet", (ListMixin, EntityScopedViewSet), body)


def test_subclass_overriding_get_queryset_in_a_class_statement_is_refused():
    with pytest.raises(TypeError, match="get_queryset"):

        class UnscopedCompanies(ListMixin, EntityScopedViewSet):
            queryset = Company.objects.all()

            def get_queryset(self):
                return Company.objects.all()


def test_subclass_narrowing_through_the_hook_is_allowed():
    class NarrowCompanies(ListMixin, EntityScopedViewSet):
        queryset = Company.objects.all()
        serializer_class = serializers.Serializer

        def narrow_queryset(self, queryset):
            return queryset.filter(role="customer")

    assert issubclass(NarrowCompanies, EntityScopedViewSet)
