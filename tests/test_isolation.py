"""Tenant isolation over every route, driven by the OpenAPI schema.

"A request never sees, counts, or changes a row of another entity: an id that belongs to another
entity behaves exactly like an id that does not exist." The caller (`api`: every scope, its own
entity) gets the ids of a fully populated other entity and, side by side, random UUIDs:

- path ids → 404, with a body identical to the random UUID's 404 (every operation with a path id);
- id filters of lists → 200 with an empty page (every list operation with an id-like filter);
- ids in bodies → the documented 4xx, equal to the random UUID's answer except for the id itself
  (every id-like field of every request body);
- the dashboard, stage `leadCount`s and list `memberCount`s count none of the other entity's rows;
- afterwards every row of the other entity is exactly as it was (count and every column), and no
  row of the caller's entity points at a row of another entity.

Operations come from `/api/schema`; the tables below say how to call each one. A new route or a
new id-like field that is not in a table fails the test with a message saying what to add.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from itertools import product

import pytest
from django.apps import apps
from django.test import Client
from django.utils import timezone

from axiomatic.models import Entity, User
from axiomatic.tenancy import TenantModel
from crm.choices import EmailChannel, EmailStatus
from crm.models import (
    CompanyMembership,
    Import,
    ImportRowError,
    OutboundEmail,
    OutboundEmailConnection,
    PipelineStage,
)
from crm.services.activities import activity_create
from crm.services.actors import Actor
from crm.services.custom_fields import custom_field_create
from crm.services.leads import lead_create, lead_move_stage
from crm.services.pipeline import stage_create
from marketing.models import MarketingList, MarketingListMember
from tests import factories
from webhooks.models import WebhookEndpoint

API_PREFIXES = ("/api/crm/", "/api/marketing/")
METHODS = ("get", "post", "put", "patch", "delete")
WRITE_METHODS = ("post", "put", "patch", "delete")
NOT_ID_PARAMS = {"entityId"}

Body = dict | None
Ids = dict  # name → id string (or list of id strings for "stageIds")


# --- the schema ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    spec: dict = field(compare=False, repr=False)
    body_fields: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.method.upper()} {self.path}"

    @property
    def path_params(self) -> list[str]:
        return re.findall(r"{(\w+)}", self.path)

    @property
    def query_params(self) -> list[str]:
        return [p["name"] for p in self.spec.get("parameters", []) if p["in"] == "query"]

    @property
    def is_list(self) -> bool:
        """A GET whose path does not end in an id: a collection (or the dashboard)."""
        return self.method == "get" and not self.path.endswith("}")

    def url(self, ids: dict[str, str]) -> str:
        return re.sub(r"{(\w+)}", lambda m: str(ids[m.group(1)]), self.path)


def _resolve(schema: dict, node: dict) -> dict:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].removeprefix("#/components/schemas/")]
    return node


@pytest.fixture(scope="module")
def operations(django_db_setup, django_db_blocker) -> list[Operation]:
    """Every operation under /api/crm and /api/marketing, from the generated OpenAPI document."""
    with django_db_blocker.unblock():
        response = Client().get("/api/schema", {"format": "json"})
    assert response.status_code == 200, response.content[:300]
    schema = response.json()
    found = []
    for path, item in schema["paths"].items():
        if not path.startswith(API_PREFIXES):
            continue
        for method in METHODS:
            if method not in item:
                continue
            spec = item[method]
            content = spec.get("requestBody", {}).get("content", {}).get("application/json")
            props = _resolve(schema, content["schema"]).get("properties", {}) if content else {}
            found.append(Operation(method, path, spec, tuple(props)))
    assert len(found) > 30, "the schema lists suspiciously few operations"
    return found


def is_id_name(name: str) -> bool:
    return (name.endswith("Id") or name.endswith("Ids")) and name not in NOT_ID_PARAMS


# --- the data -----------------------------------------------------------------------------------


def populate(entity: Entity, user: User, *, tag: str) -> Ids:
    """One of every resource in `entity`, owned by `user`; returns their ids by parameter name."""
    actor = Actor.for_user(user)
    company = factories.make_company(entity, name=f"{tag} Corp", owner=user, domain=f"{tag}.example.com")
    contact = factories.make_contact(entity, company=company, email=f"{tag}@example.com", owner=user)
    membership = CompanyMembership.objects.for_entity(entity).get(contact=contact)
    new, contacted, won = (factories.stage(entity, key) for key in ("new", "contacted", "won"))
    lead = lead_create(
        entity=entity,
        actor=actor,
        stage=new,
        title=f"{tag} deal",
        company=company,
        contact=contact,
        value=Decimal("1000.00"),
        owner=user,
    )
    lead = lead_move_stage(lead=lead, stage=contacted, actor=actor)  # a stage_changed event
    lead_create(entity=entity, actor=actor, stage=won, title=f"{tag} won", contact=contact, value=Decimal("5.00"))
    activity = activity_create(entity=entity, actor=actor, created_by=user, lead=lead, type="call", subject="Call")
    task = activity_create(
        entity=entity,
        actor=actor,
        created_by=user,
        lead=lead,
        type="task",
        subject="Follow up",
        due_at=timezone.now() - timedelta(days=1),
        project_id=uuid.uuid4(),
        assignee=user,
    )
    stage_create(entity=entity, name=f"{tag} stage")  # a stage only this entity has
    marketing_list = MarketingList.objects.create(entity=entity, name=f"{tag} newsletter")
    member = MarketingListMember.objects.create(
        entity=entity, marketing_list=marketing_list, contact=contact, email=contact.email
    )
    connection = OutboundEmailConnection(
        entity=entity, channel=EmailChannel.GMAIL, email_address=f"{tag}-sales@example.com", connected_by=user
    )
    connection.set_tokens(
        access_token="access", refresh_token="refresh", expires_at=timezone.now() + timedelta(hours=1)
    )
    connection.save()
    email = OutboundEmail.objects.create(
        entity=entity,
        lead=lead,
        company=company,
        contact=contact,
        connection=connection,
        channel=EmailChannel.GMAIL,
        from_address=connection.email_address,
        subject="Hello",
        html_body="<p>Hello</p>",
        to_addresses=[contact.email],
        status=EmailStatus.SENT,
        sent_at=timezone.now(),
        provider_message_id=f"{tag}-message",
        created_by=user,
    )
    endpoint = WebhookEndpoint(entity=entity, url=f"https://{tag}.example.com/hooks")
    endpoint.set_secret(f"whsec_{tag}")
    endpoint.save()
    custom_field = custom_field_create(
        entity=entity, object_type="company", key="code", label="Code", type="text", unique=True
    )
    stages = PipelineStage.objects.for_entity(entity).order_by("sort_order", "id")
    job = Import.objects.create(entity=entity, object_type="company", file_name=f"{tag}.csv", created_by=user)
    ImportRowError.objects.create(entity=entity, job=job, row=1, column="name", message="Bad", cells=[tag])
    return {
        "companyId": str(company.pk),
        "contactId": str(contact.pk),
        "membershipId": str(membership.pk),
        "stageId": str(contacted.pk),  # has a lead
        "targetStageId": str(new.pk),
        "stageIds": [str(pk) for pk in stages.values_list("pk", flat=True)],
        "leadId": str(lead.pk),
        "activityId": str(activity.pk),
        "taskId": str(task.pk),
        "projectId": str(task.project_id),
        "emailId": str(email.pk),
        "connectionId": str(connection.pk),
        "listId": str(marketing_list.pk),
        "memberId": str(member.pk),
        "userId": str(user.pk),
        "endpointId": str(endpoint.pk),
        "importId": str(job.pk),
        "customFieldId": str(custom_field.pk),
    }


def tenant_models() -> list:
    return [m for m in apps.get_models() if issubclass(m, TenantModel)]


def entity_rows(entity: Entity, user: User) -> dict[str, list[dict]]:
    """Every row of the entity (all columns), plus the entity, its memberships, keys and owner."""
    rows = {}
    for model in apps.get_models():
        if issubclass(model, TenantModel) or any(f.name == "entity" for f in model._meta.fields):
            rows[model._meta.label] = list(model._default_manager.filter(entity=entity).order_by("pk").values())
    rows["axiomatic.Entity"] = list(Entity.objects.filter(pk=entity.pk).values())
    rows["axiomatic.User"] = list(User.objects.filter(pk=user.pk).values())
    return rows


def cross_entity_references(entity: Entity) -> list[str]:
    """Rows of `entity` whose foreign key points at a row of another entity."""
    found = []
    for model in tenant_models():
        for fk in model._meta.fields:
            target = fk.related_model
            if not fk.is_relation or fk.name == "entity" or target is None or not issubclass(target, TenantModel):
                continue
            bad = (
                model.objects.for_entity(entity)
                .filter(**{f"{fk.name}__isnull": False})
                .exclude(**{f"{fk.name}__entity": entity})
            )
            found += [f"{model._meta.label}.{fk.name} of {pk}" for pk in bad.values_list("pk", flat=True)]
    return found


@dataclass
class Foreign:
    """The other entity, populated, with a snapshot of all its rows taken before the test acts."""

    entity: Entity
    user: User
    ids: Ids
    before: dict = field(repr=False)

    def assert_untouched(self) -> None:
        """Same rows (count and every column) in every table as before the test acted."""
        after = entity_rows(self.entity, self.user)
        changed = []
        for label in sorted(set(after) | set(self.before)):
            old = {row["id"]: row for row in self.before.get(label, [])}
            new = {row["id"]: row for row in after.get(label, [])}
            changed += [f"{label} {pk}: deleted" for pk in old.keys() - new.keys()]
            changed += [f"{label} {pk}: created {new[pk]}" for pk in new.keys() - old.keys()]
            for pk in old.keys() & new.keys():
                diff = {k: (v, new[pk][k]) for k, v in old[pk].items() if new[pk][k] != v}
                if diff:
                    changed.append(f"{label} {pk}: changed (before, after) {diff}")
        assert not changed, "rows of the other entity changed:\n" + "\n".join(changed)


@pytest.fixture
def foreign(other_entity, other_user) -> Foreign:
    ids = populate(other_entity, other_user, tag="bob")
    return Foreign(other_entity, other_user, ids, entity_rows(other_entity, other_user))


@pytest.fixture
def own(entity, user) -> Ids:
    """The caller's own copy of everything: parents for nested routes and valid bodies."""
    return populate(entity, user, tag="alice")


def random_ids(names) -> Ids:
    return {name: str(uuid.uuid4()) for name in names}


def send(api, method: str, url: str, body: Body = None, params: dict | None = None):
    if method == "get":
        return api.get(url, params)
    return getattr(api, method)(url, body, params=params)


def _text(response) -> str:
    """The body as text, streamed (CSV exports) or not."""
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content).decode()
    return response.content.decode()


def describe(response) -> str:
    return f"{response.status_code} {_text(response)[:400]!r}"


def without(response, id_value) -> object:
    """The JSON body with the id under test replaced, so a foreign and a random answer compare."""
    text = response.content.decode()
    for value in id_value if isinstance(id_value, list) else [id_value]:
        text = text.replace(str(value), "<id>")
    return json.loads(text) if text else None


def assert_no_failures(failures: list[str], checked: int, what: str) -> None:
    assert checked, f"no {what} found in the schema"
    assert not failures, f"{len(failures)} failure(s) in {checked} {what}:\n" + "\n".join(failures)


# --- 1. path ids ----------------------------------------------------------------------------------

# A body each write operation with a path id is valid with (so a 400 cannot hide the 404), built from
# the caller's own ids. None: sent without a body. Every write operation with a path id needs an entry.
PATH_ID_BODIES: dict[str, Callable[[Ids], Body]] = {
    "PATCH /api/crm/activities/{activityId}": lambda o: {"subject": "Hijacked", "status": "cancelled"},
    "DELETE /api/crm/activities/{activityId}": lambda o: None,
    "PATCH /api/crm/companies/{companyId}": lambda o: {"name": "Hijacked"},
    "POST /api/crm/companies/{companyId}/merge": lambda o: {"mergeId": o["companyId"], "dryRun": True},
    "POST /api/crm/contacts/{contactId}/merge": lambda o: {"mergeId": o["contactId"], "dryRun": True},
    "PATCH /api/crm/contacts/{contactId}": lambda o: {"firstName": "Hijacked"},
    "DELETE /api/crm/contacts/{contactId}": lambda o: None,
    "POST /api/crm/contacts/{contactId}/company-memberships": lambda o: {"companyId": o["companyId"], "title": "Mole"},
    "PATCH /api/crm/contacts/{contactId}/company-memberships/{membershipId}": lambda o: {"title": "Hijacked"},
    "DELETE /api/crm/contacts/{contactId}/company-memberships/{membershipId}": lambda o: None,
    "PATCH /api/crm/leads/{leadId}": lambda o: {"title": "Hijacked"},
    "DELETE /api/crm/leads/{leadId}": lambda o: None,
    "POST /api/crm/leads/{leadId}/activities": lambda o: {"type": "note", "subject": "Hijacked"},
    "PATCH /api/crm/leads/{leadId}/stage": lambda o: {"stage": "won"},
    "PATCH /api/crm/pipeline-stages/{stageId}": lambda o: {"name": "Hijacked"},
    "PATCH /api/crm/outbound-email-connections/{connectionId}": lambda o: {"shared": True},
    "POST /api/crm/outbound-email-connections/{connectionId}/sync": lambda o: {},
    "DELETE /api/crm/pipeline-stages/{stageId}": lambda o: {"moveLeadsToStageId": o["targetStageId"]},
    "PATCH /api/marketing/lists/{listId}": lambda o: {"name": "Hijacked"},
    "DELETE /api/marketing/lists/{listId}": lambda o: None,
    "DELETE /api/marketing/lists/{listId}/members/{memberId}": lambda o: None,
    "POST /api/marketing/lists/{listId}/members/{memberId}/unsubscribe": lambda o: {},
    "PATCH /api/crm/webhook-endpoints/{endpointId}": lambda o: {"description": "Hijacked", "enabled": False},
    "PATCH /api/crm/custom-fields/{customFieldId}": lambda o: {"label": "Hijacked"},
    "DELETE /api/crm/custom-fields/{customFieldId}": lambda o: None,
    "DELETE /api/crm/webhook-endpoints/{endpointId}": lambda o: None,
    "POST /api/crm/webhook-endpoints/{endpointId}/rotate-secret": lambda o: {},
    "POST /api/crm/webhook-endpoints/{endpointId}/test": lambda o: {},
    "POST /api/crm/webhook-endpoints/{endpointId}/replay": lambda o: {"fromSeq": 1},
    "POST /api/crm/imports/{importId}/cancel": lambda o: None,
}


def test_another_entitys_path_ids_are_404_exactly_like_unknown_ids(api, own, foreign, operations):
    """Every operation with `{...Id}` in its path, with each id the other entity's (alone or with the
    caller's own parent/child), answers 404 with the very body a random UUID in the same place gets."""
    with_path_ids = [op for op in operations if op.path_params]
    missing = [op.key for op in with_path_ids if op.method in WRITE_METHODS and op.key not in PATH_ID_BODIES]
    assert not missing, f"add a valid example body to PATH_ID_BODIES for: {missing}"
    stale = set(PATH_ID_BODIES) - {op.key for op in operations}
    assert not stale, f"PATH_ID_BODIES names operations the schema no longer has: {stale}"

    random = random_ids(foreign.ids)
    failures, checked = [], 0
    for op in with_path_ids:
        unknown = [name for name in op.path_params if name not in foreign.ids]
        if unknown:
            failures.append(f"{op.key}: no test row for path parameter(s) {unknown}; extend populate()")
            continue
        body = PATH_ID_BODIES[op.key](own) if op.key in PATH_ID_BODIES else None
        # Each path id either the caller's own or the other entity's, never all own.
        for choice in product((False, True), repeat=len(op.path_params)):
            if not any(choice):
                continue
            theirs = {n: (foreign.ids[n] if f else own[n]) for n, f in zip(op.path_params, choice, strict=True)}
            nobody = {n: (random[n] if f else own[n]) for n, f in zip(op.path_params, choice, strict=True)}
            checked += 1
            got = send(api, op.method, op.url(theirs), body)
            expected = send(api, op.method, op.url(nobody), body)
            label = f"{op.method.upper()} {op.url(theirs)}"
            if expected.status_code != 404:
                failures.append(f"{label}: a random UUID answered {describe(expected)}, not 404")
            if got.status_code != 404:
                failures.append(f"{label}: another entity's id answered {describe(got)}, not 404")
            elif got.content != expected.content:
                failures.append(f"{label}: 404 body {got.content!r} differs from a random UUID's {expected.content!r}")
    assert_no_failures(failures, checked, "path-id calls")
    foreign.assert_untouched()
    assert cross_entity_references(api.entity) == []


# --- 2. id filters of lists ---------------------------------------------------------------------

# Which id of the populated data each id-like list filter takes.
FILTER_IDS: dict[str, str] = {
    "companyId": "companyId",
    "contactId": "contactId",
    "leadId": "leadId",
    "stageId": "stageId",
    "projectId": "projectId",
    "ownerUserId": "userId",
    "assigneeUserId": "userId",
}

ZERO_WHEN_OWNER_FILTERED = ("companies", "contacts", "leads", "tasks")


def _dashboard_counts(body: dict) -> list:
    """The dashboard figures `ownerUserId` narrows (activities are the whole entity's by contract)."""
    return [
        body["companies"]["total"],
        body["contacts"]["total"],
        *body["leads"].values(),
        *body["tasks"].values(),
        *(stage["leadCount"] for stage in body["pipeline"]),
        *(len(money) for money in body["totals"].values()),
    ]


def _page(body: dict) -> tuple[int, list]:
    lists = [value for value in body.values() if isinstance(value, list)]
    assert len(lists) == 1, f"expected one list in a page: {body}"
    return body["total"], lists[0]


def test_another_entitys_ids_as_list_filters_match_nothing(api, own, foreign, operations):
    """Every id-like filter of every list (and the dashboard) given the other entity's id → 200 with an
    empty page and total 0; the caller's own id in the same filter finds its rows (the filter works)."""
    failures, checked = [], 0
    for op in operations:
        if not op.is_list:
            continue
        path_ids = {name: own[name] for name in op.path_params if name in own}
        url = op.url(path_ids)
        for name in filter(is_id_name, op.query_params):
            if name not in FILTER_IDS:
                failures.append(f"{op.key}: id filter {name!r} is not in FILTER_IDS")
                continue
            checked += 1
            label = f"GET {url}?{name}=<other entity's>"
            theirs = send(api, "get", url, params={name: foreign.ids[FILTER_IDS[name]]})
            mine = send(api, "get", url, params={name: own[FILTER_IDS[name]]})
            if theirs.status_code != 200 or mine.status_code != 200:
                failures.append(f"{label}: {describe(theirs)} (own id: {describe(mine)})")
                continue
            if op.path.endswith("/export"):  # CSV: the header row only, and the own id finds rows
                text, own_text = _text(theirs), _text(mine)
                if len(text.splitlines()) != 1 or any(v in text for v in foreign.ids.values() if isinstance(v, str)):
                    failures.append(f"{label}: the export is not empty: {text[:300]!r}")
                if len(own_text.splitlines()) < 2:
                    failures.append(f"GET {url}?{name}=<own>: exported nothing, so the filter proves nothing")
                continue
            body, own_body = theirs.json(), mine.json()
            leaked = [v for v in foreign.ids.values() if isinstance(v, str) and v in theirs.content.decode()]
            if leaked:
                failures.append(f"{label}: the answer mentions the other entity's ids {leaked}")
            if "total" in body:
                total, items = _page(body)
                if total != 0 or items:
                    failures.append(f"{label}: total {total}, {len(items)} items; expected an empty page")
                if _page(own_body)[0] == 0:
                    failures.append(f"GET {url}?{name}=<own>: found nothing, so the filter proves nothing")
            elif op.path == "/api/crm/dashboard":
                if any(_dashboard_counts(body)):
                    failures.append(f"{label}: counts other entity's rows: {body}")
                if not any(_dashboard_counts(own_body)):
                    failures.append(f"GET {url}?{name}=<own>: all zero, so the filter proves nothing")
            else:
                failures.append(f"{op.key}: not a page (no total) and no special case for it here")
    assert_no_failures(failures, checked, "list filters")
    foreign.assert_untouched()


# --- 3. ids in request bodies -------------------------------------------------------------------

INVALID = "400 naming the field"
NOT_FOUND = "404"
SKIPPED = "200 with the id skipped as not_found"
OPAQUE = "accepted: an opaque UUID, not looked up"

# Which id of the populated data each id-like body field takes.
BODY_FIELD_IDS: dict[str, str] = {
    "companyId": "companyId",
    "contactId": "contactId",
    "leadId": "leadId",
    "stageId": "stageId",
    "moveLeadsToStageId": "stageId",
    "stageIds": "stageId",
    "connectionId": "connectionId",
    "listId": "listId",
    "contactIds": "contactId",
    "companyIds": "companyId",
    "leadIds": "leadId",
    "mergeId": "contactId",  # a company merge gets another entity's contact id: not found either way
    "projectId": "projectId",
    "ownerUserId": "userId",
    "assigneeUserId": "userId",
}


def _activity(name: str) -> Callable[[Ids, str], Body]:
    """A task body with one field set to the id under test."""
    return lambda o, v: {"type": "task", "subject": "Call back", name: v}


def _patch(name: str) -> Callable[[Ids, str], Body]:
    return lambda o, v: {name: v}


def _email(name: str) -> Callable[[Ids, str], Body]:
    def build(o: Ids, v: str) -> Body:
        body = {
            "leadId": o["leadId"],
            "connectionId": o["connectionId"],
            "channel": "gmail",
            "subject": "Hello",
            "htmlBody": "<p>Hello</p>",
        }
        return body | {name: v}

    return build


# (operation, body field) → (a body valid with the caller's own ids, with the field set to the id under
# test; the documented answer). Path ids of the operation are the caller's own.
BODY_CASES: dict[tuple[str, str], tuple[Callable[[Ids, str], Body], str]] = {
    **{
        ("POST /api/crm/activities", name): (_activity(name), INVALID)
        for name in ("leadId", "companyId", "contactId", "assigneeUserId")
    },
    ("POST /api/crm/activities", "projectId"): (_activity("projectId"), OPAQUE),
    **{
        ("PATCH /api/crm/activities/{activityId}", name): (_patch(name), INVALID)
        for name in ("leadId", "companyId", "contactId", "assigneeUserId")
    },
    ("PATCH /api/crm/activities/{activityId}", "projectId"): (_patch("projectId"), OPAQUE),
    **{
        ("POST /api/crm/leads/{leadId}/activities", name): (_activity(name), INVALID)
        for name in ("leadId", "companyId", "contactId", "assigneeUserId")
    },
    ("POST /api/crm/leads/{leadId}/activities", "projectId"): (_activity("projectId"), OPAQUE),
    ("POST /api/crm/companies", "ownerUserId"): (lambda o, v: {"name": "New Co", "ownerUserId": v}, INVALID),
    ("PATCH /api/crm/companies/{companyId}", "ownerUserId"): (_patch("ownerUserId"), INVALID),
    **{
        ("POST /api/crm/contacts", name): (lambda o, v, name=name: {"firstName": "New", name: v}, INVALID)
        for name in ("companyId", "ownerUserId")
    },
    **{("PATCH /api/crm/contacts/{contactId}", name): (_patch(name), INVALID) for name in ("companyId", "ownerUserId")},
    ("POST /api/crm/contacts/{contactId}/company-memberships", "companyId"): (_patch("companyId"), INVALID),
    ("PATCH /api/crm/contacts/{contactId}/company-memberships/{membershipId}", "companyId"): (
        _patch("companyId"),
        INVALID,
    ),
    **{
        ("POST /api/crm/leads", name): (lambda o, v, name=name: {"title": "New deal", name: v}, INVALID)
        for name in ("companyId", "contactId", "stageId", "ownerUserId")
    },
    **{
        ("PATCH /api/crm/leads/{leadId}", name): (_patch(name), INVALID)
        for name in ("companyId", "contactId", "stageId", "ownerUserId")
    },
    ("PATCH /api/crm/leads/{leadId}/stage", "stageId"): (_patch("stageId"), INVALID),
    ("DELETE /api/crm/pipeline-stages/{stageId}", "moveLeadsToStageId"): (_patch("moveLeadsToStageId"), INVALID),
    ("POST /api/crm/pipeline-stages/reorder", "stageIds"): (
        lambda o, v: {"stageIds": [*o["stageIds"][1:], v]},
        INVALID,
    ),
    ("POST /api/crm/contacts/{contactId}/merge", "mergeId"): (lambda o, v: {"mergeId": v, "dryRun": True}, NOT_FOUND),
    ("POST /api/crm/companies/{companyId}/merge", "mergeId"): (lambda o, v: {"mergeId": v, "dryRun": True}, NOT_FOUND),
    ("POST /api/crm/outbound-email", "leadId"): (_email("leadId"), NOT_FOUND),
    ("POST /api/crm/outbound-email", "connectionId"): (_email("connectionId"), NOT_FOUND),
    ("POST /api/crm/prospecting/add-to-marketing-list", "listId"): (
        lambda o, v: {"listId": v, "contactIds": [o["contactId"]]},
        NOT_FOUND,
    ),
    **{
        ("POST /api/crm/prospecting/add-to-marketing-list", name): (
            lambda o, v, name=name: {"listId": o["listId"], name: [v]},
            SKIPPED,
        )
        for name in ("contactIds", "companyIds", "leadIds")
    },
}


def _body_problem(response, expect: str, name: str, value: str) -> str | None:
    """Why the answer is not the documented one for a bad id in `name`, or None."""
    status = response.status_code
    if expect == INVALID:
        body = response.json() if status == 400 else {}
        named = name in body.get("details", {}) and name in body.get("error", "")
        return None if named else f"expected 400 naming {name} (in the message and details)"
    if expect == NOT_FOUND:
        return None if status == 404 else "expected 404"
    if expect == SKIPPED:
        body = response.json() if status == 200 else {}
        ok = body.get("added") == 0 and body.get("skipped") == [{"id": value, "reason": "not_found"}]
        return None if ok else "expected 200 with added 0 and the id skipped as not_found"
    return None if status in (200, 201) else "expected the opaque id to be accepted"


def test_another_entitys_ids_in_bodies_answer_like_unknown_ids(api, own, foreign, operations):
    """Every id-like field of every request body, given the other entity's id, gets the documented
    answer, the same as for a random UUID apart from the id itself; nothing is written across."""
    writes = [op for op in operations if op.method in WRITE_METHODS]
    wanted = {(op.key, name) for op in writes for name in op.body_fields if is_id_name(name)}
    missing = sorted(wanted - set(BODY_CASES))
    assert not missing, f"add these (operation, id field) pairs to BODY_CASES: {missing}"
    stale = sorted(set(BODY_CASES) - wanted)
    assert not stale, f"BODY_CASES names fields the schema no longer has: {stale}"
    unmapped = sorted({name for _, name in wanted} - set(BODY_FIELD_IDS))
    assert not unmapped, f"add these body fields to BODY_FIELD_IDS: {unmapped}"

    by_key = {op.key: op for op in writes}
    failures = []
    for (key, name), (build, expect) in sorted(BODY_CASES.items()):
        op = by_key[key]
        url = op.url(own)
        theirs_id, random_id = foreign.ids[BODY_FIELD_IDS[name]], str(uuid.uuid4())
        theirs = send(api, op.method, url, build(own, theirs_id))
        nobody = send(api, op.method, url, build(own, random_id))
        label = f"{key} with {name}=<other entity's>"
        for who, response, value in (("another entity's id", theirs, theirs_id), ("a random UUID", nobody, random_id)):
            problem = _body_problem(response, expect, name, value)
            if problem:
                failures.append(f"{label}: {who} answered {describe(response)}; {problem}")
        if expect == OPAQUE:
            continue
        if without(theirs, theirs_id) != without(nobody, random_id):
            failures.append(f"{label}: {theirs.content!r} differs from a random UUID's {nobody.content!r}")
    assert_no_failures(failures, len(BODY_CASES), "body id fields")
    foreign.assert_untouched()
    assert cross_entity_references(api.entity) == []


# --- 4. aggregates and unfiltered reads ---------------------------------------------------------


def _numbers(node) -> list:
    if isinstance(node, bool) or node is None or isinstance(node, str):
        return []
    if isinstance(node, int | float):
        return [node]
    values = node.values() if isinstance(node, dict) else node
    return [n for value in values for n in _numbers(value)]


def test_aggregates_and_lists_of_an_empty_entity_count_nothing_of_another(api, foreign, operations):
    """With everything in the other entity and nothing of its own but defaults (stages) and an empty
    list, the caller's dashboard is all zeros, every stage has leadCount 0, its list memberCount 0,
    and no list operation's answer mentions any of the other entity's ids."""
    MarketingList.objects.create(entity=api.entity, name="bob newsletter")  # named like the other's list

    dashboard = api.get("/api/crm/dashboard")
    assert dashboard.status_code == 200, describe(dashboard)
    body = dashboard.json()
    assert not any(_numbers(body)), f"the dashboard counts another entity's rows: {body}"
    assert body["winRate90Days"] is None
    assert all(money == [] for money in body["totals"].values()), body["totals"]
    own_stages = {str(pk) for pk in PipelineStage.objects.for_entity(api.entity).values_list("pk", flat=True)}
    assert {stage["stageId"] for stage in body["pipeline"]} == own_stages

    stages = api.get("/api/crm/pipeline-stages")
    assert stages.status_code == 200, describe(stages)
    assert {stage["id"] for stage in stages.json()["stages"]} == own_stages
    assert [stage["leadCount"] for stage in stages.json()["stages"]] == [0] * len(own_stages)

    lists = api.get("/api/marketing/lists")
    assert lists.status_code == 200, describe(lists)
    assert [(item["name"], item["memberCount"]) for item in lists.json()["lists"]] == [("bob newsletter", 0)]
    assert lists.json()["total"] == 1

    failures, checked = [], 0
    foreign_ids = [v for v in foreign.ids.values() if isinstance(v, str)]
    for op in operations:
        if not op.is_list or op.path_params:
            continue
        checked += 1
        response = api.get(op.path)
        if response.status_code != 200:
            failures.append(f"GET {op.path}: {describe(response)}")
            continue
        text = _text(response)
        leaked = [value for value in foreign_ids if value in text]
        if leaked:
            failures.append(f"GET {op.path}: mentions the other entity's ids {leaked}")
        if op.path.endswith("/export"):
            if len(text.splitlines()) != 1:
                failures.append(f"GET {op.path}: not empty for an empty entity: {text[:300]!r}")
            continue
        body = response.json()
        if "total" in body and op.path != "/api/marketing/lists" and _page(body) != (0, []):
            failures.append(f"GET {op.path}: not empty for an empty entity: {body}")
    assert_no_failures(failures, checked, "list operations")
    foreign.assert_untouched()


# --- 5. values of another entity: filters and uniqueness ----------------------------------------

# The other entity's data is tagged "bob", the caller's "alice"; text filters given the other's values.
VALUE_FILTERS = {"q": "bob", "email": "bob@example.com", "stage": "bob stage"}


def test_another_entitys_values_match_nothing_and_collide_with_nothing(api, own, foreign, operations):
    """Text filters (`q`, `email`, `stage`) given the other entity's values find nothing, and its unique
    values (company domain, contact email, stage name, list name) are free in the caller's entity: no
    409, so no `existingId` of another entity."""
    failures, checked = [], 0
    for op in operations:
        if not op.is_list:
            continue
        url = op.url({name: own[name] for name in op.path_params if name in own})
        for name in set(op.query_params) & set(VALUE_FILTERS):
            checked += 1
            response = send(api, "get", url, params={name: VALUE_FILTERS[name]})
            if response.status_code != 200 or _page(response.json()) != (0, []):
                failures.append(f"GET {url}?{name}={VALUE_FILTERS[name]}: {describe(response)}; expected an empty page")
    assert_no_failures(failures, checked, "text filters")

    # A stage named by the other entity's stage name is as unknown as any name.
    for method, url in (("post", "/api/crm/leads"), ("patch", f"/api/crm/leads/{own['leadId']}/stage")):
        body = {"title": "Deal"} if method == "post" else {}
        theirs = send(api, method, url, body | {"stage": "bob stage"})
        nobody = send(api, method, url, body | {"stage": "zed stage"})
        assert theirs.status_code == 400 and "stage" in theirs.json()["details"], describe(theirs)
        assert without(theirs, "bob stage") == without(nobody, "zed stage")

    creates = [
        ("/api/crm/companies", {"name": "Bob Corp", "domain": "bob.example.com"}),
        ("/api/crm/contacts", {"firstName": "Bob", "email": "bob@example.com"}),
        ("/api/crm/pipeline-stages", {"name": "bob stage"}),
        ("/api/marketing/lists", {"name": "bob newsletter"}),
    ]
    for url, body in creates:
        response = api.post(url, body)
        assert response.status_code == 201, f"POST {url} {body}: {describe(response)}"
    foreign.assert_untouched()


def test_an_idempotency_key_used_by_another_entity_replays_nothing(api, other_api, foreign):
    """The same Idempotency-Key and body from another entity's key runs as a new request."""
    headers = {"Idempotency-Key": "same-key-everywhere"}
    theirs = other_api.post("/api/crm/companies", {"name": "Shared"}, headers=headers)
    assert theirs.status_code == 201, describe(theirs)
    mine = api.post("/api/crm/companies", {"name": "Shared"}, headers=headers)
    assert mine.status_code == 201, describe(mine)
    assert "Idempotent-Replayed" not in mine
    assert mine.json()["company"]["id"] != theirs.json()["company"]["id"]
    assert str(api.entity.pk) not in theirs.content.decode()
