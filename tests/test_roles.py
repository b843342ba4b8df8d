"""Roles: the matrix of every API route × member/admin, keys bound to membership, role commands.

The matrix is generated from the URL router: a route that is added without an entry in
`ADMIN_ONLY` / `MEMBER_ALLOWED` below fails `test_every_api_route_has_a_role_entry`, so nobody can
add an endpoint without deciding who may call it.
"""

from __future__ import annotations

import io
import json
import re
import uuid

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from apikeys.models import ApiKey
from axiomatic.api.viewsets import EntityScopedViewSet
from axiomatic.models import Membership
from tests import factories
from tests.helpers import ApiClient

# (path template, method) → who may call it. Everything not admin-only is open to members.
ADMIN_ONLY = {
    ("/api/crm/pipeline-stages", "POST"),
    ("/api/crm/pipeline-stages/{stageId}", "PATCH"),
    ("/api/crm/pipeline-stages/{stageId}", "DELETE"),
    ("/api/crm/pipeline-stages/reorder", "POST"),
    ("/api/crm/outbound-email-connections/{connectionId}", "PATCH"),
    ("/api/crm/webhook-endpoints", "POST"),
    ("/api/crm/webhook-endpoints/{endpointId}", "PATCH"),
    ("/api/crm/webhook-endpoints/{endpointId}", "DELETE"),
    ("/api/crm/webhook-endpoints/{endpointId}/rotate-secret", "POST"),
    ("/api/crm/webhook-endpoints/{endpointId}/test", "POST"),
    ("/api/crm/webhook-endpoints/{endpointId}/replay", "POST"),
    ("/api/crm/custom-fields", "POST"),
    ("/api/crm/custom-fields/{customFieldId}", "PATCH"),
    ("/api/crm/custom-fields/{customFieldId}", "DELETE"),
}
MEMBER_ALLOWED = {
    ("/api/crm/companies", "GET"),
    ("/api/crm/companies", "POST"),
    ("/api/crm/companies/{companyId}", "GET"),
    ("/api/crm/companies/{companyId}", "PATCH"),
    ("/api/crm/companies/{companyId}/contacts", "GET"),
    ("/api/crm/companies/{companyId}/merge", "POST"),
    ("/api/crm/companies/duplicates", "GET"),
    ("/api/crm/companies/duplicates/dismiss", "POST"),
    ("/api/crm/contacts/{contactId}/merge", "POST"),
    ("/api/crm/contacts/duplicates", "GET"),
    ("/api/crm/contacts/duplicates/dismiss", "POST"),
    ("/api/crm/contacts", "GET"),
    ("/api/crm/contacts", "POST"),
    ("/api/crm/contacts/{contactId}", "GET"),
    ("/api/crm/contacts/{contactId}", "PATCH"),
    ("/api/crm/contacts/{contactId}", "DELETE"),
    ("/api/crm/contacts/{contactId}/company-memberships", "GET"),
    ("/api/crm/contacts/{contactId}/company-memberships", "POST"),
    ("/api/crm/contacts/{contactId}/company-memberships/{membershipId}", "GET"),
    ("/api/crm/contacts/{contactId}/company-memberships/{membershipId}", "PATCH"),
    ("/api/crm/contacts/{contactId}/company-memberships/{membershipId}", "DELETE"),
    ("/api/crm/dashboard", "GET"),
    ("/api/crm/custom-fields", "GET"),
    ("/api/crm/custom-fields/{customFieldId}", "GET"),
    ("/api/crm/outbound-email-connections", "GET"),
    ("/api/crm/outbound-email-connections/{connectionId}/sync", "POST"),
    ("/api/crm/outbound-email", "POST"),
    ("/api/crm/outbound-email/{emailId}", "GET"),
    ("/api/crm/pipeline-stages", "GET"),
    ("/api/crm/pipeline-stages/{stageId}", "GET"),
    ("/api/crm/leads", "GET"),
    ("/api/crm/leads", "POST"),
    ("/api/crm/leads/{leadId}", "GET"),
    ("/api/crm/leads/{leadId}", "PATCH"),
    ("/api/crm/leads/{leadId}", "DELETE"),
    ("/api/crm/leads/{leadId}/stage", "PATCH"),
    ("/api/crm/leads/{leadId}/timeline", "GET"),
    ("/api/crm/leads/{leadId}/activities", "POST"),
    ("/api/crm/activities", "GET"),
    ("/api/crm/activities", "POST"),
    ("/api/crm/activities/{activityId}", "GET"),
    ("/api/crm/activities/{activityId}", "PATCH"),
    ("/api/crm/activities/{activityId}", "DELETE"),
    ("/api/crm/tasks", "GET"),
    # CSV import and export, batch writes (docs/api.md "Import and export", "Batch writes")
    ("/api/crm/imports", "GET"),
    ("/api/crm/imports", "POST"),
    ("/api/crm/imports/{importId}", "GET"),
    ("/api/crm/imports/{importId}/cancel", "POST"),
    ("/api/crm/imports/{importId}/errors", "GET"),
    ("/api/crm/companies/export", "GET"),
    ("/api/crm/companies/batch", "POST"),
    ("/api/crm/contacts/export", "GET"),
    ("/api/crm/contacts/batch", "POST"),
    ("/api/crm/leads/export", "GET"),
    ("/api/crm/leads/batch", "POST"),
    ("/api/crm/activities/export", "GET"),
    ("/api/crm/activities/batch", "POST"),
    ("/api/crm/prospecting/add-to-marketing-list", "POST"),
    ("/api/crm/changes", "GET"),
    ("/api/crm/webhook-endpoints", "GET"),
    ("/api/crm/webhook-endpoints/{endpointId}", "GET"),
    ("/api/crm/webhook-endpoints/{endpointId}/deliveries", "GET"),
    ("/api/marketing/lists", "GET"),
    ("/api/marketing/lists", "POST"),
    ("/api/marketing/lists/{listId}", "GET"),
    ("/api/marketing/lists/{listId}", "PATCH"),
    ("/api/marketing/lists/{listId}", "DELETE"),
    ("/api/marketing/lists/{listId}/members", "GET"),
    ("/api/marketing/lists/{listId}/members/{memberId}", "DELETE"),
    ("/api/marketing/lists/{listId}/members/{memberId}/unsubscribe", "POST"),
}

_PARAM = re.compile(r"\(\?P<(\w+)>[^)]*\)|<(?:\w+:)?(\w+)>")


def _template(prefix: str, pattern) -> str:
    route = str(pattern.pattern).lstrip("^").rstrip("$").replace("\\.", ".")
    route = _PARAM.sub(lambda m: "{" + (m.group(1) or m.group(2)) + "}", route)
    return prefix + route


def api_routes() -> set[tuple[str, str]]:
    """Every (path template, method) the URL router serves through the base viewset."""
    found: set[tuple[str, str]] = set()

    def walk(patterns, prefix: str) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, _template(prefix, pattern))
            elif isinstance(pattern, URLPattern):
                view_class = getattr(pattern.callback, "cls", None)
                actions = getattr(pattern.callback, "actions", None) or {}
                if view_class and issubclass(view_class, EntityScopedViewSet):
                    path = _template(prefix, pattern).replace("{format}", "")
                    if "{format}" in str(pattern.pattern) or path.endswith("."):
                        continue
                    for method in actions:
                        if method not in ("head", "options"):
                            found.add(("/" + path.lstrip("/"), method.upper()))

    walk(get_resolver().url_patterns, "")
    return found


def test_every_api_route_has_a_role_entry():
    routes = api_routes()
    assert routes, "no API route found"
    missing = routes - ADMIN_ONLY - MEMBER_ALLOWED
    assert not missing, f"Decide who may call these routes (add them to ADMIN_ONLY or MEMBER_ALLOWED): {missing}"
    assert not (ADMIN_ONLY | MEMBER_ALLOWED) - routes, "entries for routes that no longer exist"


def _call(client: ApiClient, method: str, template: str):
    path = re.sub(r"\{\w+\}", lambda _m: str(uuid.uuid4()), template)
    return getattr(client, method.lower())(path, {}) if method != "GET" else client.get(path)


@pytest.fixture
def member_key(make_api, entity):
    return make_api(user=factories.make_member(entity, role=Membership.Role.MEMBER))


@pytest.fixture
def admin_key(make_api, entity):
    return make_api(user=factories.make_member(entity, role=Membership.Role.ADMIN))


@pytest.mark.parametrize("template,method", sorted(ADMIN_ONLY))
def test_admin_only_routes_refuse_members_naming_the_role(member_key, admin_key, template, method):
    refused = _call(member_key, method, template)
    assert refused.status_code == 403, (template, method, refused.content)
    assert "admin role" in refused.json()["error"]
    allowed = _call(admin_key, method, template)
    assert allowed.status_code != 403, (template, method, allowed.content)


@pytest.mark.parametrize("template,method", sorted(MEMBER_ALLOWED))
def test_member_routes_never_refuse_a_member_for_their_role(member_key, template, method):
    response = _call(member_key, method, template)
    assert response.status_code != 403, (template, method, response.content)


def test_a_role_change_applies_to_the_next_request_of_an_existing_key(make_api, entity):
    colleague = factories.make_member(entity, role=Membership.Role.MEMBER)
    key = make_api(user=colleague)
    assert key.post("/pipeline-stages", {"name": "Trial"}).status_code == 403
    run("set_role", colleague.email, "--entity", str(entity.pk), "--role", "admin")
    assert key.post("/pipeline-stages", {"name": "Trial"}).status_code == 201
    run("set_role", colleague.email, "--entity", str(entity.pk), "--role", "member")
    assert (
        key.patch("/pipeline-stages/" + key.get("/pipeline-stages").json()["stages"][-1]["id"], {}).status_code == 403
    )


def run(*args) -> dict:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return json.loads(out.getvalue())


def test_remove_member_revokes_their_keys_and_they_answer_401_at_once(make_api, entity):
    colleague = factories.make_member(entity)
    first, second = make_api(user=colleague), make_api(user=colleague)
    assert first.get("/companies").status_code == 200
    result = run("remove_member", colleague.email.upper(), "--entity", str(entity.pk))
    assert result == {"userId": str(colleague.pk), "removed": True, "revokedKeys": 2}
    for key in (first, second):
        response = key.get("/companies")
        assert response.status_code == 401 and response["WWW-Authenticate"] == "Bearer"
    assert not Membership.objects.filter(user=colleague, entity=entity).exists()
    assert ApiKey.objects.filter(user=colleague, revoked_at__isnull=True).count() == 0


def test_a_key_stops_working_when_its_membership_goes_by_any_path(make_api, entity):
    colleague = factories.make_member(entity)
    key = make_api(user=colleague)
    Membership.objects.filter(user=colleague, entity=entity).delete()  # e.g. the admin's delete
    assert key.get("/companies").status_code == 401
    assert ApiKey.objects.get(pk=key.api_key.pk).revoked_at is not None


def test_a_key_whose_membership_is_gone_is_401_even_before_revocation(make_api, entity):
    colleague = factories.make_member(entity)
    key = make_api(user=colleague)
    # A raw delete skips signals: authentication itself still requires the membership.
    Membership.objects.filter(user=colleague, entity=entity)._raw_delete(Membership.objects.db)
    assert ApiKey.objects.get(pk=key.api_key.pk).revoked_at is None
    assert key.get("/companies").status_code == 401


def test_a_deactivated_users_keys_answer_401(make_api, entity):
    colleague = factories.make_member(entity)
    key = make_api(user=colleague)
    colleague.is_active = False
    colleague.save(update_fields=["is_active"])
    assert key.get("/companies").status_code == 401


def test_the_last_owner_can_neither_leave_nor_step_down(entity, user):
    with pytest.raises(CommandError, match="at least one owner"):
        run("remove_member", user.email, "--entity", str(entity.pk))
    with pytest.raises(CommandError, match="at least one owner"):
        run("set_role", user.email, "--entity", str(entity.pk), "--role", "admin")
    second = factories.make_member(entity, role=Membership.Role.OWNER)
    assert run("set_role", user.email, "--entity", str(entity.pk), "--role", "admin")["role"] == "admin"
    assert Membership.objects.get(user=second, entity=entity).role == "owner"


def test_role_commands_refuse_strangers_and_unknown_users(entity, other_user):
    with pytest.raises(CommandError, match="not a member"):
        run("remove_member", other_user.email, "--entity", str(entity.pk))
    with pytest.raises(CommandError, match="No user"):
        run("set_role", "nobody@example.com", "--entity", str(entity.pk), "--role", "member")


def test_sessions_follow_the_same_role_rules(entity):
    member = factories.make_member(entity)
    browser = Client()
    browser.force_login(member)
    response = browser.post(
        f"/api/crm/pipeline-stages?entityId={entity.pk}", {"name": "X"}, content_type="application/json"
    )
    assert response.status_code == 403 and "admin role" in response.json()["error"]
