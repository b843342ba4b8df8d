"""The error envelope on every kind of error under /api/ (Errors), request ids and /healthz."""

from __future__ import annotations

import json
import logging
import re
import uuid

import pytest
from django.test import Client

from crm.models import Company
from tests import factories
from tests.helpers import assert_error

# --- Unknown routes and methods ---------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/api/nope", "/api/crm/nope", "/api/crm/companies/", "/api/marketing/does-not-exist", "/api/"],
)
def test_unknown_api_route_is_json_404(client, db, path):
    body = assert_error(client.get(path), 404)
    assert "route" in body["error"].lower() or "not found" in body["error"].lower()


def test_unknown_api_route_is_json_404_for_an_authenticated_caller_too(api):
    assert_error(api.get("/api/crm/no-such-resource"), 404)


@pytest.mark.parametrize("method", ["post", "patch", "delete"])
@pytest.mark.parametrize("path", ["/api/nope", "/api/crm/companies/0.5", "/api/crm/contacts/a.b/company-memberships"])
def test_unsafe_method_on_an_unknown_api_route_is_json_404_not_a_csrf_page(db, method, path):
    client = Client(enforce_csrf_checks=True)
    client.cookies["sessionid"] = "not-a-session"
    body = assert_error(getattr(client, method)(path, data="{}", content_type="application/json"), 404)
    assert "route" in body["error"].lower()


def test_disallowed_host_header_under_api_is_json_400(client, db):
    body = assert_error(client.get("/api/crm/companies", headers={"Host": "evil..example"}), 400)
    assert body == {"error": "Bad request."}


def test_unknown_route_outside_api_is_not_forced_to_json(client, db):
    response = client.get("/definitely-not-a-page")
    assert response.status_code == 404
    assert not response["Content-Type"].startswith("application/json")


def test_unsupported_method_on_a_list_route_is_json_405(api):
    body = assert_error(api.delete("/companies"), 405)
    assert "DELETE" in body["error"]


def test_put_on_a_resource_is_json_405(api, entity):
    company = factories.make_company(entity)
    response = api.client.put(
        f"/api/crm/companies/{company.pk}?entityId={entity.pk}",
        data=json.dumps({"name": "Replaced"}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {api.secret}"},
    )
    assert_error(response, 405)
    company.refresh_from_db()
    assert company.name != "Replaced"


def test_post_to_schema_is_json_405(client, db):
    assert_error(client.post("/api/schema"), 405)


def test_post_to_docs_is_json_405(client, db):
    assert_error(client.post("/api/docs"), 405)


def test_unknown_schema_format_is_json_404(client, db):
    assert_error(client.get("/api/schema", {"format": "xml"}), 404)


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "1234", "00000000-0000-0000-0000-00000000000g"])
def test_malformed_uuid_in_path_is_json_404(api, bad_id):
    assert_error(api.get(f"/companies/{bad_id}"), 404)


# --- Bodies -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    ['{"name": ', '{"name": "x",}', "{'name': 'x'}", '{"name": "x"} trailing', "\x00"],
    ids=["truncated", "trailing-comma", "single-quotes", "trailing-garbage", "nul-byte"],
)
def test_malformed_json_is_400(api, raw):
    body = assert_error(api.post("/companies", raw=raw), 400)
    assert "JSON" in body["error"]
    assert not Company.objects.exists()


def test_invalid_utf8_body_is_400(api):
    assert_error(api.post("/companies", raw=b'{"name": "\xff\xfe"}'), 400)


def test_json_array_body_is_400(api):
    body = assert_error(api.post("/companies", raw='[{"name": "Acme"}]'), 400)
    assert "object" in body["error"]
    assert not Company.objects.exists()


def test_json_array_body_on_patch_is_400(api, entity):
    company = factories.make_company(entity, name="Same")
    assert_error(api.patch(f"/companies/{company.pk}", raw='[{"name": "Changed"}]'), 400)
    company.refresh_from_db()
    assert company.name == "Same"


@pytest.mark.parametrize("raw", ["42", '"Acme"', "true", "null", "1.5"])
def test_json_scalar_body_is_400(api, raw):
    assert_error(api.post("/companies", raw=raw), 400)


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/xml", "multipart/form-data; boundary=xyz"],
)
def test_non_json_content_type_is_415(api, content_type):
    body = assert_error(api.post("/companies", raw="name=Acme", content_type=content_type), 415)
    assert body["error"]
    assert not Company.objects.exists()


def test_json_with_charset_parameter_is_accepted(api):
    response = api.post("/companies", raw='{"name": "Acme"}', content_type="application/json; charset=utf-8")
    assert response.status_code == 201, response.content


def test_body_over_one_megabyte_is_413(api):
    raw = json.dumps({"name": "Big", "notes": "x" * (1024 * 1024)})
    body = assert_error(api.post("/companies", raw=raw), 413)
    assert "1 MB" in body["error"]
    assert not Company.objects.exists()


def test_body_just_under_one_megabyte_is_accepted(api):
    raw = json.dumps({"name": "Almost big", "notes": "x" * (1024 * 1024 - 100)})
    assert len(raw) <= 1024 * 1024
    assert api.post("/companies", raw=raw).status_code == 201


@pytest.mark.parametrize(
    "raw",
    [
        '{"name": "Ac\\u0000me"}',
        '{"name": "Acme", "notes": "line\\u0000"}',
        '{"name": "Acme", "no\\u0000tes": "x"}',
        '{"name": "Acme", "entityId": "\\u0000"}',
    ],
    ids=["in-value", "in-other-field", "in-key", "in-entity-id"],
)
def test_nul_character_in_a_string_is_400(api, raw):
    body = assert_error(api.post("/companies", raw=raw), 400)
    assert "NUL" in body["error"]
    assert not Company.objects.exists()


def test_nul_character_in_a_patch_is_400(api, entity):
    company = factories.make_company(entity, name="Clean")
    assert_error(api.patch(f"/companies/{company.pk}", raw='{"notes": "a\\u0000b"}'), 400)


@pytest.mark.parametrize(
    "raw",
    [
        '{"name": "Ac\\ud800me"}',
        '{"name": "Acme", "notes": "\\udfff"}',
        '{"name": "Acme", "\\ud800": "x"}',
        '{"name": "Acme", "entityId": "\\ud800"}',
    ],
    ids=["in-value", "in-other-field", "in-key", "in-entity-id"],
)
def test_lone_surrogate_escape_in_a_string_is_400_not_500(api, raw):
    body = assert_error(api.post("/companies", raw=raw), 400)
    assert "surrogate" in body["error"]
    assert not Company.objects.exists()


def test_lone_surrogate_entity_id_with_an_idempotency_key_is_400_not_500(api):
    response = api.post("/companies", raw='{"name": "Acme", "entityId": "\\ud800"}', headers={"Idempotency-Key": "k1"})
    assert_error(response, 400)
    assert not Company.objects.exists()


def test_surrogate_pair_escape_is_one_valid_character(api):
    response = api.post("/companies", raw='{"name": "Smile \\ud83d\\ude00"}')
    assert response.status_code == 201, response.content
    assert response.json()["company"]["name"] == "Smile \U0001f600"


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_number_literal_is_400(api, literal):
    body = assert_error(api.post("/companies", raw=f'{{"name": "Acme", "notes": {literal}}}'), 400)
    assert literal.lstrip("-") in body["error"]


@pytest.mark.parametrize("depth", [100, 500, 5_000, 100_000])
def test_deeply_nested_json_is_400_not_500(api, depth):
    raw = '{"name": "Acme", "notes": ' + "[" * depth + "]" * depth + "}"
    body = assert_error(api.post("/companies", raw=raw), 400)
    assert "nested" in body["error"]


@pytest.mark.parametrize("depth", [100, 500, 5_000])
def test_deeply_nested_objects_are_400_not_500(api, depth):
    raw = '{"name": "Acme", "notes": ' + '{"a": ' * depth + "1" + "}" * depth + "}"
    assert_error(api.post("/companies", raw=raw), 400)


def test_moderately_nested_json_is_parsed_and_validated_normally(api):
    raw = '{"name": "Acme", "notes": ' + "[" * 10 + "]" * 10 + "}"
    body = assert_error(api.post("/companies", raw=raw), 400)
    assert "notes" in body["details"]


def test_validation_error_names_the_field_in_details(api):
    body = assert_error(api.post("/companies", {"name": ""}), 400)
    assert "name" in body["details"]
    assert all(isinstance(message, str) for message in body["details"]["name"])


# --- Unhandled exceptions ---------------------------------------------------------------------


@pytest.mark.urls("tests.error_urls")
def test_unhandled_exception_in_an_api_view_is_json_500_and_rolls_back(api, caplog):
    with caplog.at_level(logging.ERROR, logger="axiomatic.api"):
        response = api.get("/api/crm/test-explode")
    body = assert_error(response, 500)
    assert body == {"error": "Internal server error."}
    assert "secret internal detail" not in response.content.decode()
    assert response["X-Request-Id"]
    assert not Company.objects.exists(), "the request's transaction must be rolled back"
    assert any("secret internal detail" in str(record.exc_info) for record in caplog.records)


@pytest.mark.urls("tests.error_urls")
def test_unhandled_exception_in_a_plain_view_under_api_is_json_500(entity, settings, caplog):
    # DEBUG on: Django would answer its HTML technical page; the middleware answers first. The
    # default test client re-raises any exception the middleware did not handle.
    settings.DEBUG = True
    with caplog.at_level(logging.ERROR, logger="axiomatic.api"):
        response = Client().get("/api/test-explode-plain", {"entityId": str(entity.pk)})
    body = assert_error(response, 500)
    assert "secret internal detail" not in body["error"]
    assert response["X-Request-Id"]
    assert not Company.objects.exists()
    assert any(record.getMessage() == "Unhandled error under /api/" for record in caplog.records)


# --- X-Request-Id -----------------------------------------------------------------------------

_MINTED = re.compile(r"^[0-9a-f]{32}$")


def test_request_id_is_minted_on_success(api):
    response = api.get("/companies")
    assert response.status_code == 200
    assert _MINTED.match(response["X-Request-Id"])


def test_request_ids_differ_between_requests(api):
    assert api.get("/companies")["X-Request-Id"] != api.get("/companies")["X-Request-Id"]


@pytest.mark.parametrize(
    ("path", "status"),
    [("/api/crm/companies", 401), ("/api/nope", 404), ("/healthz", 200), ("/api/schema", 200), ("/nope", 404)],
)
def test_request_id_is_on_every_response(client, db, path, status):
    response = client.get(path)
    assert response.status_code == status
    assert _MINTED.match(response["X-Request-Id"])


def test_request_id_is_on_error_responses_of_authenticated_calls(api):
    response = api.get(f"/companies/{uuid.uuid4()}")
    assert response.status_code == 404
    assert _MINTED.match(response["X-Request-Id"])


@pytest.mark.parametrize("given", ["abc-123", "req_2024.01:xyz", "6f1c2a4e-8b7d-4e0f-9a3b-2c5d7e9f1a0b", "A" * 128])
def test_sane_client_request_id_is_echoed(api, given):
    response = api.get("/companies", headers={"X-Request-Id": given})
    assert response["X-Request-Id"] == given


def test_client_request_id_is_echoed_on_errors(client, db):
    response = client.get("/api/crm/companies", headers={"X-Request-Id": "trace-401"})
    assert response.status_code == 401
    assert response["X-Request-Id"] == "trace-401"


@pytest.mark.parametrize(
    "given",
    ["has spaces", "A" * 129, "<script>", "semi;colon", 'quote"d'],
    ids=["space", "long", "html", "semi", "quote"],
)
def test_insane_client_request_id_is_replaced(api, given):
    response = api.get("/companies", headers={"X-Request-Id": given})
    assert response.status_code == 200
    assert response["X-Request-Id"] != given
    assert _MINTED.match(response["X-Request-Id"])


# --- /healthz ---------------------------------------------------------------------------------


def test_healthz_is_ok_without_credentials(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize("path", ["/companies", "/contacts", "/leads", "/activities", "/tasks"])
def test_nul_character_in_a_query_parameter_is_a_400_not_a_database_error(api, path):
    assert_error(api.get(path, {"q": "ac\x00me"}), 400)


_TOO_MANY_PARAMS = {f"p{i}": "1" for i in range(1001)}  # DATA_UPLOAD_MAX_NUMBER_FIELDS is 1000


@pytest.mark.parametrize("path", ["/companies", "/api/schema"])
def test_too_many_query_parameters_is_400_not_500(api, path):
    body = assert_error(api.get(path, _TOO_MANY_PARAMS), 400)
    assert "query parameters" in body["error"]


@pytest.mark.parametrize("headers", [None, {"Idempotency-Key": "k-many"}], ids=["plain", "idempotent"])
def test_too_many_query_parameters_on_a_post_is_400_not_500(api, headers):
    assert_error(api.post("/companies", {"name": "Acme"}, params=_TOO_MANY_PARAMS, headers=headers), 400)
    assert not Company.objects.exists()


@pytest.mark.parametrize("content_type", ["*/*", "text/plain", "application/x-www-form-urlencoded"])
def test_a_body_that_does_not_say_json_is_415(api, content_type):
    assert_error(api.post("/companies", raw='{"name": "Acme"}', content_type=content_type), 415)
    assert not Company.objects.filter(name="Acme").exists()


@pytest.mark.parametrize(
    "path, body",
    [
        ("/activities", {"type": "note", "subject": "x", "projectId": 5}),
        ("/pipeline-stages/reorder", {"stageIds": [1, 2]}),
        ("/outbound-email", {"leadId": 1, "connectionId": 2, "channel": "gmail", "subject": "s", "htmlBody": "b"}),
    ],
)
def test_an_integer_where_a_uuid_string_is_expected_is_400(api, path, body):
    body = assert_error(api.post(path, body), 400)
    assert body["details"]
