"""Test data builders. Plain functions: explicit arguments, sensible defaults, no magic."""

from __future__ import annotations

import itertools
from datetime import datetime

from apikeys.models import SCOPES
from apikeys.services import IssuedKey, api_key_issue
from axiomatic.models import Entity, Membership, User
from axiomatic.services import entity_create, membership_ensure, user_get_or_create
from crm.models import Company, CompanyMembership, Contact, PipelineStage

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


def make_contact(entity: Entity, *, company: Company | None = None, **fields) -> Contact:
    n = next(_seq)
    fields.setdefault("first_name", f"First{n}")
    fields.setdefault("last_name", f"Last{n}")
    contact = Contact.objects.create(entity=entity, **fields)
    if company is not None:
        CompanyMembership.objects.create(entity=entity, contact=contact, company=company, is_primary=True)
    return contact


def stage(entity: Entity, system_key: str) -> PipelineStage:
    return PipelineStage.objects.for_entity(entity).get(system_key=system_key)
