"""The checklist of docs/architecture.md, enforced: every API resource is in the role matrix, the
change registry, the scoped admin and the committed schema, and docs/webhooks.md's catalogue is
the change registry's. A new resource that misses one of them fails here, naming what is missing."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from django.contrib import admin
from django.urls import URLPattern, URLResolver, get_resolver

from axiomatic.admin import StaffScopeMixin
from axiomatic.api.viewsets import EntityScopedViewSet
from axiomatic.changes import event_types, object_type_of
from axiomatic.models import Change
from crm.models import (
    CompanyDuplicate,
    ContactDuplicate,
    CustomField,
    Import,
    ImportRowError,
    LeadEvent,
    OutboundEmailConnection,
)
from tests.test_roles import ADMIN_ONLY, MEMBER_ALLOWED, api_routes
from webhooks.feed import TEST_EVENT_TYPE
from webhooks.models import WebhookDelivery, WebhookEndpoint

DOCS = Path(__file__).resolve().parent.parent / "docs"
# Served by the API but not feed objects: rows written only as a side effect of other writes (a
# lead's timeline, the feed itself, the webhook delivery log) and the configuration of the
# entity's integrations (mailboxes, webhook endpoints) and of its data model (custom field
# definitions: a record's values travel in its own changes), which are no CRM records to keep a copy of;
# duplicate pairs, derived from the records by the services (their changes are the records').
# Import jobs and their row errors are work records, not CRM data: the records they write are in the feed.
NOT_FEED_OBJECTS = {
    LeadEvent,
    Change,
    WebhookDelivery,
    OutboundEmailConnection,
    WebhookEndpoint,
    CustomField,
    ContactDuplicate,
    CompanyDuplicate,
    Import,
    ImportRowError,
}


def _models_by_path() -> dict[str, type]:
    """Path template of every entity-scoped API route → the model its viewset serves."""
    found: dict[str, type] = {}

    def walk(patterns, prefix: str) -> None:
        for pattern in patterns:
            route = prefix + str(pattern.pattern).lstrip("^").rstrip("$").replace("\\Z", "")
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern):
                view_class = getattr(pattern.callback, "cls", None)
                if isinstance(view_class, type) and issubclass(view_class, EntityScopedViewSet):
                    template = re.sub(r"\(\?P<(\w+)>[^)]*\)|<(?:\w+:)?(\w+)>", lambda m: "{%s}" % (m[1] or m[2]), route)
                    if "{format}" not in template and not template.endswith("."):
                        found["/" + template.replace("\\.", ".")] = view_class.queryset.model

    walk(get_resolver().url_patterns, "")
    return found


def test_every_api_resource_is_in_the_role_matrix_change_registry_admin_scope_and_schema():
    served = _models_by_path()
    assert "/api/crm/companies" in served and "/api/marketing/lists" in served, "the route walk found nothing"
    schema_paths = set(yaml.safe_load((DOCS / "openapi.yaml").read_text())["paths"])
    decided = {path for path, _method in ADMIN_ONLY | MEMBER_ALLOWED}
    missing = []
    for path, model in sorted(served.items()):
        if (
            path not in decided
            or not {route for route in api_routes() if route[0] == path} <= ADMIN_ONLY | MEMBER_ALLOWED
        ):
            missing.append(f"{path}: no entry in the role matrix (tests/test_roles.py)")
        if path not in schema_paths:
            missing.append(f"{path}: not in docs/openapi.yaml (regenerate it)")
        if model not in NOT_FEED_OBJECTS and object_type_of(model) is None:
            missing.append(f"{path}: {model.__name__} is no change-feed object (register_object_type)")
        model_admin = admin.site._registry.get(model)
        if not isinstance(model_admin, StaffScopeMixin):
            missing.append(f"{path}: {model.__name__} has no entity-scoped admin")
    assert missing == [], "\n".join(missing)


def test_the_webhook_catalogue_documents_every_registered_event_type():
    text = (DOCS / "webhooks.md").read_text()
    catalogue = text[text.index("## Event catalogue") :]
    documented = re.findall(r"^#### `([a-z_.]+)`$", catalogue, flags=re.MULTILINE)
    assert sorted(documented) == sorted([*event_types(), TEST_EVENT_TYPE])
    table = catalogue[: catalogue.index("#### ")]
    for object_type in {name.split(".")[0] for name in event_types()}:
        assert f"| {object_type} " in table, object_type
