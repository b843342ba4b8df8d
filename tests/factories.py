"""Test data builders. Plain functions: explicit arguments, sensible defaults, no magic."""

from __future__ import annotations

import itertools
from datetime import datetime
from decimal import Decimal

from django.utils import timezone

from apikeys.models import SCOPES
from apikeys.services import IssuedKey, api_key_issue
from axiomatic.models import Entity, Membership, User
from axiomatic.services import entity_create, membership_ensure, user_get_or_create
from crm.models import Activity, Company, CompanyMembership, Contact, Lead, PipelineStage
from marketing.models import MarketingList, MarketingListMember, MemberSource, MemberStatus

_seq = itertools.count(1)


def make_user(*, email: str | None = None, name: str = "", password: str | None = "pw-123456") -> User:
    return user_get_or_create(email=email or f"user{next(_seq)}@example.com", name=name, password=password)


def make_entity(
    *, name: str | None = None, owner: User | None = None, currency: str = "USD", time_zone: str = "UTC"
) -> Entity:
    return entity_create(
        name=name or f"Entity {next(_seq)}",
        owner=owner or make_user(),
        currency=currency,
        time_zone=time_zone,
    )


def make_member(entity: Entity, *, role: str = Membership.Role.MEMBER, **user_kwargs) -> User:
    user = make_user(**user_kwargs)
    membership_ensure(user=user, entity=entity, role=role)
    return user


def make_key(
    entity: Entity,
    user: User,
    *,
    scopes: tuple[str, ...] = SCOPES,
    expires_at: datetime | None = None,
    name: str = "test key",
) -> IssuedKey:
    return api_key_issue(entity=entity, user=user, name=name, scopes=list(scopes), expires_at=expires_at)


def make_company(entity: Entity, **fields) -> Company:
    fields.setdefault("name", f"Company {next(_seq)}")
    return Company.objects.create(entity=entity, **fields)


def make_staff(*, name: str = "Staff Person") -> User:
    """A staff superuser (for the admin)."""
    staff = make_user(name=name)
    staff.is_staff = staff.is_superuser = True
    staff.save(update_fields=["is_staff", "is_superuser"])
    return staff


def make_contact(entity: Entity, *, company: Company | None = None, **fields) -> Contact:
    n = next(_seq)
    fields.setdefault("first_name", f"First{n}")
    fields.setdefault("last_name", f"Last{n}")
    contact = Contact.objects.create(entity=entity, **fields)
    if company is not None:
        make_membership(contact, company, is_primary=True)
    return contact


def make_membership(contact: Contact, company: Company, **fields) -> CompanyMembership:
    return CompanyMembership.objects.create(entity_id=contact.entity_id, contact=contact, company=company, **fields)


def stage(entity: Entity, system_key: str) -> PipelineStage:
    return PipelineStage.objects.for_entity(entity).get(system_key=system_key)


def make_lead(
    entity: Entity, stage: PipelineStage | str = "new", *, created_at: datetime | None = None, **fields
) -> Lead:
    """A lead written directly (no timeline event); `stage` is a stage or a system key."""
    if isinstance(stage, str):
        stage = PipelineStage.objects.for_entity(entity).get(system_key=stage)
    fields.setdefault("title", "Deal")
    fields.setdefault("currency", entity.default_currency)
    fields.setdefault("probability_pct", stage.default_probability_pct)
    if isinstance(fields.get("value"), str | int):
        fields["value"] = Decimal(fields["value"])
    lead = Lead.objects.create(entity=entity, stage=stage, **fields)
    if created_at is not None:  # auto_now_add: set it afterwards
        Lead.objects.filter(pk=lead.pk).update(created_at=created_at)
        lead.created_at = created_at
    return lead


def make_activity(
    entity: Entity,
    *,
    type: str = "call",
    subject: str | None = None,
    status: str | None = None,
    occurred_at: datetime | None = None,
    **fields,
) -> Activity:
    """An activity written directly; status defaults as the API's (open for tasks, else completed)."""
    status = status or ("open" if type == "task" else "completed")
    return Activity.objects.create(
        entity=entity,
        type=type,
        subject=subject or f"{type} {status}",
        status=status,
        occurred_at=occurred_at or timezone.now(),
        **fields,
    )


def make_task(entity: Entity, subject: str = "Task", *, due: datetime | None = None, **fields) -> Activity:
    return make_activity(entity, type="task", subject=subject, due_at=due, **fields)


def make_list(entity: Entity, name: str | None = None, **fields) -> MarketingList:
    return MarketingList.objects.create(entity=entity, name=name or f"List {next(_seq)}", **fields)


def make_list_member(
    marketing_list: MarketingList,
    contact: Contact,
    *,
    status: str = MemberStatus.SUBSCRIBED,
    source: str = MemberSource.ADMIN,
    **fields,
) -> MarketingListMember:
    return MarketingListMember.objects.create(
        entity_id=marketing_list.entity_id,
        marketing_list=marketing_list,
        contact=contact,
        email=contact.email or f"member{next(_seq)}@example.com",
        status=status,
        source=source,
        **fields,
    )
