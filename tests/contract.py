"""The API contract every resource keeps, as data (in the style of NetBox's `APIViewTestCases`).

Each `Resource` names its routes (`Op`: method, path template, a valid body), a factory that makes
a row (with new parents, or in a given parent's list), and its list's plural key and pinned query
count. `test_api_contract.py`
runs the same checks over all of them: 401 without credentials, 403 without the scope, 400/403 for a
missing or foreign `entityId`, 404 for another entity's ids, 400 naming unknown body fields,
read-only fields ignored, the list envelope and a list query count that does not grow with the page.

A row (`Row`) is a dict of the ids the path templates name (`{companyId}`, ...), plus `pk`: the id
of the row the resource's list shows. Bodies are built from the caller's own row, so every call is
valid (`test_each_route_works_with_only_its_own_scope` proves it) and a 4xx can only come from the
rule under test.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from django.apps import apps
from django.utils import timezone

from crm.choices import EmailChannel, EmailStatus
from crm.models import (
    Activity,
    Company,
    Contact,
    LeadEvent,
    OutboundEmail,
    OutboundEmailConnection,
    PipelineStage,
)
from crm.services.pipeline import stage_create
from marketing.models import MarketingList
from tests import factories

Row = dict  # path parameter name → id string; "pk": the listed row; "stageIds": every stage id
OLD = "2000-01-01T00:00:00Z"  # a timestamp no row of a test run has


@dataclass(frozen=True)
class Op:
    """One route with a call that succeeds (answering `ok`) for the caller's own row."""

    method: str
    path: str
    body: dict | Callable[[Row], dict] | None = None  # a callable builds it from the caller's row
    ok: int = 200
    role: str = ""  # "create" or "update": answers the item, checked for read-only fields

    @property
    def has_path_ids(self) -> bool:
        return "{" in self.path

    def send(self, client, row: Row, *, body_row: Row | None = None, extra: dict | None = None, **kwargs):
        """Calls the route for `row` (its ids in the path), the body built from `body_row` (default `row`)."""
        url = re.sub(r"{(\w+)}", lambda m: str(row[m.group(1)]), self.path)
        params = kwargs.pop("params", None)
        if self.method == "get":
            return client.get(url, params, **kwargs)
        body = self.body(body_row or row) if callable(self.body) else self.body
        if extra:
            body = {**(body or {}), **extra}
        return getattr(client, self.method)(url, body, params=params, **kwargs)


@dataclass(frozen=True)
class Resource:
    name: str
    family: str  # the scope family: read:<family> for GET, write:<family> otherwise
    make: Callable  # (entity, parent row or None) → Row: a row, in the parent's list when given
    ops: tuple[Op, ...]  # every route of the resource; the list first, when there is one
    plural: str | None = None  # the list's key
    paginated: bool = True
    preexisting: int = 0  # rows every entity's list shows from the start (the default stages)
    list_queries: int | None = None  # pinned: queries of one list request, at any page size
    item: str | None = None  # the item key of create and update answers
    read_only: dict = field(default_factory=dict)  # field → a value it must not take when sent

    def __str__(self) -> str:
        return self.name

    def role(self, role: str) -> Op | None:
        return next((op for op in self.ops if op.role == role), None)


def tenant_rows(entity) -> dict[str, list[dict]]:
    """Every column of every CRM and marketing row of the entity, to show that nothing changed."""
    return {
        model._meta.label: list(model._default_manager.filter(entity=entity).order_by("pk").values())
        for model in apps.get_models()
        if model._meta.app_label in ("crm", "marketing") and any(f.name == "entity" for f in model._meta.fields)
    }


def _read_only(*names: str, **values) -> dict:
    common = {"id": str(uuid.uuid4()), "createdAt": OLD, "updatedAt": OLD}
    return {name: common[name] for name in names} | values


# --- factories: (entity, parent row or None) → a row, with new parents unless `parent` has them ----------


def _owner(entity):
    return entity.memberships.first().user


def _company(entity, parent=None) -> Row:
    company = factories.make_company(entity, owner=_owner(entity), domain=f"{uuid.uuid4().hex}.com")
    return {"companyId": str(company.pk), "pk": str(company.pk)}


def _contact(entity, parent=None) -> Row:
    """A contact, primary at the parent's company (or a new one), with a second membership elsewhere."""
    company_id = (parent or _company(entity))["companyId"]
    contact = factories.make_contact(entity, owner=_owner(entity))
    factories.make_membership(contact, Company.objects.get(pk=company_id), is_primary=True)
    factories.make_membership(contact, factories.make_company(entity))
    return {"companyId": company_id, "contactId": str(contact.pk), "pk": str(contact.pk)}


def _membership(entity, parent=None) -> Row:
    contact = Contact.objects.get(pk=parent["contactId"]) if parent else factories.make_contact(entity)
    membership = factories.make_membership(contact, factories.make_company(entity), is_primary=not parent)
    return {
        "contactId": str(contact.pk),
        "membershipId": str(membership.pk),
        "spareCompanyId": str(factories.make_company(entity).pk),  # not yet a company of the contact
        "pk": str(membership.pk),
    }


def _stage(entity, parent=None) -> Row:
    """A stage of its own with a lead; `stageIds`: every stage of the entity, in order."""
    stage = stage_create(entity=entity, name=f"Stage {uuid.uuid4().hex[:8]}")
    factories.make_lead(entity, stage)
    stage_ids = PipelineStage.objects.for_entity(entity).order_by("sort_order").values_list("pk", flat=True)
    return {"stageId": str(stage.pk), "pk": str(stage.pk), "stageIds": [str(pk) for pk in stage_ids]}


def _lead(entity, parent=None) -> Row:
    """A lead with a company, a contact, an owner, an activity and a timeline event."""
    row = _contact(entity)
    lead = factories.make_lead(
        entity, company_id=row["companyId"], contact_id=row["contactId"], owner=_owner(entity), value="100"
    )
    factories.make_activity(entity, lead=lead, company_id=row["companyId"], contact_id=row["contactId"])
    LeadEvent.objects.create(entity=entity, lead=lead, kind="lead_created", occurred_at=timezone.now(), summary="New")
    return row | {"leadId": str(lead.pk), "pk": str(lead.pk)}


def _event(entity, parent=None) -> Row:
    if parent is None:
        row = _lead(entity)
        return row | {"pk": str(LeadEvent.objects.get(lead_id=row["leadId"]).pk)}
    event = LeadEvent.objects.create(
        entity=entity,
        lead_id=parent["leadId"],
        kind="stage_changed",
        occurred_at=timezone.now() - timedelta(minutes=1),
        actor_type="user",
        actor_name="Someone",
        summary="Moved",
        data={"fromStageName": "A", "toStageName": "B"},
    )
    return parent | {"pk": str(event.pk)}


def _activity(entity, parent=None) -> Row:
    row = _lead(entity)
    activity = Activity.objects.get(lead_id=row["leadId"])
    Activity.objects.filter(pk=activity.pk).update(assignee=_owner(entity), created_by=_owner(entity))
    return row | {"activityId": str(activity.pk), "pk": str(activity.pk)}


def _task(entity, parent=None) -> Row:
    row = _lead(entity)
    task = factories.make_task(entity, due=timezone.now(), assignee=_owner(entity), lead_id=row["leadId"])
    return row | {"pk": str(task.pk)}


def _email(entity, parent=None) -> Row:
    row = _lead(entity)
    connection = OutboundEmailConnection(
        entity=entity, channel=EmailChannel.GMAIL, email_address=f"{uuid.uuid4().hex[:8]}@example.com"
    )
    connection.set_tokens(
        access_token="access", refresh_token="refresh", expires_at=timezone.now() + timedelta(hours=1)
    )
    connection.save()
    email = OutboundEmail.objects.create(
        entity=entity,
        lead_id=row["leadId"],
        contact_id=row["contactId"],
        connection=connection,
        channel=EmailChannel.GMAIL,
        from_address=connection.email_address,
        subject="Hello",
        html_body="<p>Hello</p>",
        to_addresses=["carol@example.com"],
        status=EmailStatus.SENT,
        sent_at=timezone.now(),
    )
    return row | {"emailId": str(email.pk), "connectionId": str(connection.pk), "pk": str(email.pk)}


def _member(entity, parent=None) -> Row:
    marketing_list = MarketingList.objects.get(pk=parent["listId"]) if parent else factories.make_list(entity)
    contact = factories.make_contact(entity, email=f"{uuid.uuid4().hex}@example.com")
    member = factories.make_list_member(marketing_list, contact)
    return {"listId": str(marketing_list.pk), "memberId": str(member.pk), "pk": str(member.pk)}


def _list(entity, parent=None) -> Row:
    row = _member(entity)
    return {"listId": row["listId"], "pk": row["listId"]}


# --- the resources ------------------------------------------------------------------------------------

MEMBERSHIPS = "/api/crm/contacts/{contactId}/company-memberships"
MEMBERSHIP = MEMBERSHIPS + "/{membershipId}"

RESOURCES = [
    Resource(
        "companies",
        "crm",
        _company,
        (
            Op("get", "/api/crm/companies"),
            Op("post", "/api/crm/companies", {"name": "New Co"}, ok=201, role="create"),
            Op("get", "/api/crm/companies/{companyId}"),
            Op("patch", "/api/crm/companies/{companyId}", {"name": "Renamed"}, role="update"),
        ),
        plural="companies",
        item="company",
        list_queries=6,
        read_only=_read_only("id", "createdAt", "updatedAt", archivedAt=OLD),
    ),
    Resource(
        "company-contacts",
        "crm",
        _contact,
        (Op("get", "/api/crm/companies/{companyId}/contacts"),),
        plural="contacts",
        list_queries=7,
    ),
    Resource(
        "contacts",
        "crm",
        _contact,
        (
            Op("get", "/api/crm/contacts"),
            Op("post", "/api/crm/contacts", {"firstName": "New"}, ok=201, role="create"),
            Op("get", "/api/crm/contacts/{contactId}"),
            Op("patch", "/api/crm/contacts/{contactId}", {"title": "CTO"}, role="update"),
            Op("delete", "/api/crm/contacts/{contactId}", ok=204),
        ),
        plural="contacts",
        item="contact",
        list_queries=6,
        read_only=_read_only("id", "createdAt", "updatedAt", fullName="Somebody Else"),
    ),
    Resource(
        "company-memberships",
        "crm",
        _membership,
        (
            Op("get", MEMBERSHIPS),
            Op("post", MEMBERSHIPS, lambda r: {"companyId": r["spareCompanyId"]}, ok=201, role="create"),
            Op("get", MEMBERSHIP),
            Op("patch", MEMBERSHIP, {"title": "CTO"}, role="update"),
            Op("delete", MEMBERSHIP),
        ),
        plural="memberships",
        item="membership",
        paginated=False,
        list_queries=6,
        read_only=_read_only("id", "createdAt", contactId=str(uuid.uuid4()), companyName="Hacked"),
    ),
    Resource(
        "pipeline-stages",
        "crm",
        _stage,
        (
            Op("get", "/api/crm/pipeline-stages"),
            Op("post", "/api/crm/pipeline-stages", {"name": "Demo booked"}, ok=201, role="create"),
            Op("post", "/api/crm/pipeline-stages/reorder", lambda r: {"stageIds": r["stageIds"][::-1]}),
            Op("get", "/api/crm/pipeline-stages/{stageId}"),
            Op("patch", "/api/crm/pipeline-stages/{stageId}", {"name": "Renamed"}, role="update"),
            Op("delete", "/api/crm/pipeline-stages/{stageId}", lambda r: {"moveLeadsToStageId": r["stageIds"][0]}),
        ),
        plural="stages",
        item="stage",
        paginated=False,
        preexisting=7,
        list_queries=5,
        read_only=_read_only("id", sortOrder=0, systemKey="won", leadCount=99),
    ),
    Resource(
        "leads",
        "crm",
        _lead,
        (
            Op("get", "/api/crm/leads"),
            Op("post", "/api/crm/leads", {"title": "New deal"}, ok=201, role="create"),
            Op("get", "/api/crm/leads/{leadId}"),
            Op("patch", "/api/crm/leads/{leadId}", {"title": "Renamed"}, role="update"),
            Op("patch", "/api/crm/leads/{leadId}/stage", {"stage": "won"}),
            Op("post", "/api/crm/leads/{leadId}/activities", {"type": "note", "subject": "Hi"}, ok=201),
            Op("delete", "/api/crm/leads/{leadId}"),
        ),
        plural="leads",
        item="lead",
        list_queries=6,
        read_only=_read_only(
            "id", "createdAt", "updatedAt", status="won", weightedValue="5.00", closedAt=OLD, stageChangedAt=OLD
        ),
    ),
    Resource(
        "lead-timeline",
        "crm",
        _event,
        (Op("get", "/api/crm/leads/{leadId}/timeline"),),
        plural="timeline",
        list_queries=7,
    ),
    Resource(
        "activities",
        "crm",
        _activity,
        (
            Op("get", "/api/crm/activities"),
            Op("post", "/api/crm/activities", {"type": "call", "subject": "Intro"}, ok=201, role="create"),
            Op("get", "/api/crm/activities/{activityId}"),
            Op("patch", "/api/crm/activities/{activityId}", {"subject": "Renamed"}, role="update"),
            Op("delete", "/api/crm/activities/{activityId}"),
        ),
        plural="activities",
        item="activity",
        list_queries=6,
        read_only=_read_only("id", "createdAt", "updatedAt", completedAt=OLD, createdByUserId=str(uuid.uuid4())),
    ),
    Resource(
        "tasks",
        "crm",
        _task,
        (Op("get", "/api/crm/tasks"),),
        plural="tasks",
        list_queries=6,
    ),
    Resource(
        "outbound-email",
        "crm",
        _email,
        (
            Op("get", "/api/crm/outbound-email/{emailId}"),
            Op(
                "post",
                "/api/crm/outbound-email",
                lambda r: {
                    "leadId": r["leadId"],
                    "connectionId": r["connectionId"],
                    "channel": "gmail",
                    "subject": "Hello",
                    "htmlBody": "<p>Hello</p>",
                    "to": ["carol@example.com"],
                },
                ok=202,
            ),
        ),
    ),
    Resource(
        "marketing-lists",
        "marketing",
        _list,
        (
            Op("get", "/api/marketing/lists"),
            Op("post", "/api/marketing/lists", {"name": "Webinar"}, ok=201, role="create"),
            Op("get", "/api/marketing/lists/{listId}"),
            Op("patch", "/api/marketing/lists/{listId}", {"description": "New"}, role="update"),
            Op("delete", "/api/marketing/lists/{listId}"),
        ),
        plural="lists",
        item="list",
        list_queries=6,
        read_only=_read_only("id", "createdAt", memberCount=99),
    ),
    Resource(
        "list-members",
        "marketing",
        _member,
        (
            Op("get", "/api/marketing/lists/{listId}/members"),
            Op("post", "/api/marketing/lists/{listId}/members/{memberId}/unsubscribe", {}),
            Op("delete", "/api/marketing/lists/{listId}/members/{memberId}"),
        ),
        plural="members",
        list_queries=7,
    ),
]
