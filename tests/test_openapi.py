"""The OpenAPI document as a reviewed artefact: `docs/openapi.yaml` is what the code generates,
drf-spectacular has nothing to warn about, and the conventions clients rely on hold everywhere
(operationIds, tags, closed request bodies, error answers, links)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.core.management import call_command
from drf_spectacular.drainage import GENERATOR_STATS

SCHEMA_FILE = Path(settings.BASE_DIR) / "docs" / "openapi.yaml"
REGENERATE = ".venv/bin/python manage.py spectacular --file docs/openapi.yaml"
HTTP_METHODS = ("get", "post", "patch", "put", "delete")


@pytest.fixture(scope="module")
def generated(tmp_path_factory, django_db_setup, django_db_blocker) -> str:
    """The document exactly as `manage.py spectacular --validate --fail-on-warn` writes it."""
    out = tmp_path_factory.mktemp("openapi") / "openapi.yaml"
    GENERATOR_STATS.reset()  # warnings of documents other tests generated are not this one's
    with django_db_blocker.unblock():
        call_command("spectacular", "--file", str(out), "--validate", "--fail-on-warn")
    return out.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def schema(generated) -> dict:
    return yaml.safe_load(generated)


def operations(schema: dict):
    for path, item in schema["paths"].items():
        for method in HTTP_METHODS:
            if method in item:
                yield path, method, item[method]


def component(schema: dict, node: dict | None) -> dict:
    ref = (node or {}).get("$ref", "")
    return schema["components"]["schemas"][ref.removeprefix("#/components/schemas/")] if ref else (node or {})


def test_the_committed_schema_is_current(generated):
    committed = SCHEMA_FILE.read_text(encoding="utf-8") if SCHEMA_FILE.exists() else ""
    assert committed == generated, (
        f"docs/openapi.yaml is out of date: the API changed and the reviewed schema did not. Regenerate it "
        f"with `{REGENERATE}`, read the diff, and commit it with the change."
    )


# --- operationIds and tags -------------------------------------------------------------------------

EXPECTED_OPERATION_IDS = {
    ("get", "/api/crm/companies"): "listCompanies",
    ("post", "/api/crm/companies"): "createCompany",
    ("get", "/api/crm/companies/{companyId}"): "getCompany",
    ("patch", "/api/crm/companies/{companyId}"): "updateCompany",
    ("get", "/api/crm/companies/{companyId}/contacts"): "listCompanyContacts",
    ("get", "/api/crm/contacts"): "listContacts",
    ("post", "/api/crm/contacts"): "createContact",
    ("get", "/api/crm/contacts/{contactId}"): "getContact",
    ("patch", "/api/crm/contacts/{contactId}"): "updateContact",
    ("delete", "/api/crm/contacts/{contactId}"): "deleteContact",
    ("get", "/api/crm/contacts/{contactId}/company-memberships"): "listContactCompanyMemberships",
    ("post", "/api/crm/contacts/{contactId}/company-memberships"): "createContactCompanyMembership",
    ("get", "/api/crm/contacts/{contactId}/company-memberships/{membershipId}"): "getContactCompanyMembership",
    ("patch", "/api/crm/contacts/{contactId}/company-memberships/{membershipId}"): "updateContactCompanyMembership",
    ("delete", "/api/crm/contacts/{contactId}/company-memberships/{membershipId}"): "deleteContactCompanyMembership",
    ("get", "/api/crm/pipeline-stages"): "listPipelineStages",
    ("post", "/api/crm/pipeline-stages"): "createPipelineStage",
    ("get", "/api/crm/pipeline-stages/{stageId}"): "getPipelineStage",
    ("patch", "/api/crm/pipeline-stages/{stageId}"): "updatePipelineStage",
    ("delete", "/api/crm/pipeline-stages/{stageId}"): "deletePipelineStage",
    ("post", "/api/crm/pipeline-stages/reorder"): "reorderPipelineStages",
    ("get", "/api/crm/leads"): "listLeads",
    ("post", "/api/crm/leads"): "createLead",
    ("get", "/api/crm/leads/{leadId}"): "getLead",
    ("patch", "/api/crm/leads/{leadId}"): "updateLead",
    ("delete", "/api/crm/leads/{leadId}"): "deleteLead",
    ("patch", "/api/crm/leads/{leadId}/stage"): "moveLeadStage",
    ("get", "/api/crm/leads/{leadId}/timeline"): "listLeadTimeline",
    ("post", "/api/crm/leads/{leadId}/activities"): "createLeadActivity",
    ("get", "/api/crm/activities"): "listActivities",
    ("post", "/api/crm/activities"): "createActivity",
    ("get", "/api/crm/activities/{activityId}"): "getActivity",
    ("patch", "/api/crm/activities/{activityId}"): "updateActivity",
    ("delete", "/api/crm/activities/{activityId}"): "deleteActivity",
    ("get", "/api/crm/tasks"): "listTasks",
    ("get", "/api/crm/dashboard"): "getDashboard",
    ("post", "/api/crm/prospecting/add-to-marketing-list"): "addToMarketingList",
    ("post", "/api/crm/outbound-email"): "sendOutboundEmail",
    ("get", "/api/crm/outbound-email/{emailId}"): "getOutboundEmail",
    ("get", "/api/crm/outbound-email-connections"): "listOutboundEmailConnections",
    ("patch", "/api/crm/outbound-email-connections/{connectionId}"): "updateOutboundEmailConnection",
    ("get", "/api/marketing/lists"): "listMarketingLists",
    ("post", "/api/marketing/lists"): "createMarketingList",
    ("get", "/api/marketing/lists/{listId}"): "getMarketingList",
    ("patch", "/api/marketing/lists/{listId}"): "updateMarketingList",
    ("delete", "/api/marketing/lists/{listId}"): "deleteMarketingList",
    ("get", "/api/marketing/lists/{listId}/members"): "listMarketingListMembers",
    ("delete", "/api/marketing/lists/{listId}/members/{memberId}"): "deleteMarketingListMember",
    ("post", "/api/marketing/lists/{listId}/members/{memberId}/unsubscribe"): "unsubscribeMarketingListMember",
}


def test_operation_ids_say_what_the_call_does(schema):
    found = {(method, path): operation.get("operationId") for path, method, operation in operations(schema)}
    assert {key: found.get(key) for key in EXPECTED_OPERATION_IDS} == EXPECTED_OPERATION_IDS


def test_every_operation_id_is_unique_lower_camel_case_and_verb_first(schema):
    ids = [operation.get("operationId") or "" for _path, _method, operation in operations(schema)]
    assert len(ids) == len(set(ids))
    assert [name for name in ids if not re.fullmatch(r"[a-z]+(?:[A-Z][a-z0-9]*)+", name)] == []
    assert [name for name in ids if name.startswith(("crm", "marketing", "api"))] == [], "Django's names"


def test_operations_are_grouped_by_resource(schema):
    tags = {(method, path): operation.get("tags") for path, method, operation in operations(schema)}
    assert tags[("get", "/api/crm/companies/{companyId}/contacts")] == ["companies"]
    assert tags[("patch", "/api/crm/leads/{leadId}/stage")] == ["leads"]
    assert tags[("get", "/api/marketing/lists/{listId}/members")] == ["marketing-lists"]
    assert tags[("post", "/api/crm/prospecting/add-to-marketing-list")] == ["prospecting"]
    assert all(len(value or ()) == 1 for value in tags.values())
    assert [tag["name"] for tag in schema["tags"]] == sorted({value[0] for value in tags.values()})


def test_the_operation_id_rule_needs_no_declaration_for_new_routes():
    """A route added later (a change feed, webhook endpoints) gets its names from its item and list keys."""
    from axiomatic.api.openapi import operation_id, operation_tag
    from axiomatic.api.viewsets import EntityScopedViewSet, ParentResource
    from crm.models import Lead

    class WebhookEndpoints(EntityScopedViewSet):
        item_key = "webhookEndpoint"
        list_key = "webhookEndpoints"

    class LeadNotes(EntityScopedViewSet):
        item_key = "note"
        list_key = "notes"
        parent_resource = ParentResource(Lead, "leadId")

    def named(cls, action, path="/api/crm/x"):
        view = cls()
        view.action = action
        return operation_id(view, path)

    assert named(WebhookEndpoints, "list") == "listWebhookEndpoints"
    assert named(WebhookEndpoints, "create") == "createWebhookEndpoint"
    assert named(WebhookEndpoints, "retrieve") == "getWebhookEndpoint"
    assert named(WebhookEndpoints, "partial_update") == "updateWebhookEndpoint"
    assert named(WebhookEndpoints, "destroy") == "deleteWebhookEndpoint"
    assert named(WebhookEndpoints, "rotate_secret", "/api/crm/webhook-endpoints/{webhookEndpointId}/rotate-secret") == (
        "rotateWebhookEndpointSecret"
    )
    assert named(LeadNotes, "list") == "listLeadNotes"
    assert operation_tag("/api/crm/changes") == "changes"
    assert operation_tag("/api/marketing/lists/{listId}") == "marketing-lists"


# --- request bodies, errors, links -----------------------------------------------------------------


def test_request_bodies_refuse_unknown_fields_but_take_entity_id(schema):
    for path, method, operation in operations(schema):
        if "requestBody" not in operation:
            continue
        for content in operation["requestBody"]["content"].values():  # JSON, or a file upload's form
            body = component(schema, content["schema"])
            assert body.get("additionalProperties") is False, (method, path)
            assert body["properties"]["entityId"]["format"] == "uuid", (method, path)


@pytest.mark.parametrize(
    ("component_name", "field", "expected"),
    [
        ("CompanyRequest", "name", {"minLength": 1, "maxLength": 200, "pattern": r"\S"}),
        ("LeadRequest", "probabilityPct", {"minimum": 0, "maximum": 100}),
        ("ActivityRequest", "occurredAt", {"format": "date-time"}),
        ("StageReorderRequest", "stageIds", {"maxItems": 500}),
        ("MembershipRequest", "startDate", {"format": "date"}),
    ],
)
def test_validation_limits_are_in_the_schema(schema, component_name, field, expected):
    properties = schema["components"]["schemas"][component_name]["properties"]
    assert expected.items() <= properties[field].items()


def test_money_is_a_decimal_string_or_a_number_with_two_decimals(schema):
    value = schema["components"]["schemas"]["LeadRequest"]["properties"]["value"]
    assert value["nullable"] is True
    string, number = value["oneOf"]
    assert string["pattern"] == r"^[0-9]{1,12}(\.[0-9]{1,2})?$"
    assert number == {"type": "number", "minimum": 0, "maximum": 999999999999.99, "multipleOf": 0.01}
    out = schema["components"]["schemas"]["Lead"]["properties"]["value"]
    assert out["pattern"] == r"^[0-9]{1,12}\.[0-9]{2}$"


def test_errors_are_documented_with_the_envelope_where_they_can_happen(schema):
    missing = []
    for path, method, operation in operations(schema):
        expected = {"400", "401", "403", "429", "503"}
        if "{" in path:
            expected.add("404")
        if method in ("post", "patch", "delete"):
            expected |= {"413", "415"}
        if method in ("post", "patch"):
            expected.add("409")
        if method == "post" and path.startswith("/api/crm/"):
            expected.add("422")
        for status in sorted(expected - set(operation["responses"])):
            missing.append(f"{method.upper()} {path} {status}")
        for status in expected & set(operation["responses"]):
            body = component(schema, operation["responses"][status]["content"]["application/json"]["schema"])
            assert "error" in body["properties"], (method, path, status)
        for status in ("429", "503"):
            assert "Retry-After" in operation["responses"][status]["headers"], (method, path, status)
    assert missing == []


LINKS = {
    "createCompany": {"getCompany", "updateCompany", "listCompanyContacts"},
    "createContact": {"listContactCompanyMemberships", "createContactCompanyMembership"},
    "createLead": {"moveLeadStage", "createLeadActivity", "listLeadTimeline", "sendOutboundEmail"},
    "createMarketingList": {"listMarketingListMembers", "addToMarketingList"},
    "sendOutboundEmail": {"getOutboundEmail"},
}


def test_create_operations_link_to_the_operations_that_take_the_new_id(schema):
    by_id = {operation["operationId"]: operation for _path, _method, operation in operations(schema)}
    for source, targets in LINKS.items():
        responses = by_id[source]["responses"]
        status = "202" if "202" in responses else "201"
        links = responses[status]["links"]
        assert targets <= set(links), source
        for name, link in links.items():
            assert link["operationId"] in by_id, (source, name)
    assert by_id["createLead"]["responses"]["201"]["links"]["sendOutboundEmail"]["requestBody"] == {
        "leadId": "$response.body#/lead/id"
    }
    assert by_id["createLead"]["responses"]["201"]["links"]["moveLeadStage"]["parameters"] == {
        "leadId": "$response.body#/lead/id"
    }
    membership = by_id["createContactCompanyMembership"]["responses"]["201"]["links"]
    assert membership["getContactCompanyMembership"]["parameters"] == {
        "contactId": "$request.path.contactId",
        "membershipId": "$response.body#/membership/id",
    }
