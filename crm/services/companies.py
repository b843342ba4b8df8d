"""Company rules and writes: the domain and country normalisers, domain uniqueness (409 with the
existing id) and the archive timestamp.

The API's serializer, the pages' form and the admin all validate a company's domain and country
with the normalisers here (through `axiomatic.errors.field_rule`), and every write goes through
`company_create` / `company_update`, which apply them again: one rule, one message, wherever a
company is written.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit
from uuid import UUID

from django.db import transaction
from django.utils import timezone

from axiomatic import changes, errors
from axiomatic.models import Entity
from axiomatic.uniqueness import ensure_unique, save_unique
from crm.choices import CompanyStatus
from crm.models import Company
from crm.services.custom_fields import (
    custom_fields_apply,
    custom_fields_conflict,
    custom_fields_ensure_unique,
    custom_fields_take,
)
from crm.services.duplicates import companies_refresh

DOMAIN_MESSAGE = "Enter a domain such as example.com."
COUNTRY_MESSAGE = "Use an ISO 3166-1 alpha-2 code such as DE."
DOMAIN_TAKEN_MESSAGE = "A company with domain {domain} already exists."
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")


def company_domain_normalise(value: str | None) -> str | None:
    """`https://WWW.Example.com/path` → `www.example.com`; blank → None (no domain).

    The domain is the company's natural key (unique per entity), so it is stored in one form
    whatever people paste; something that is no host name is refused (`Invalid` on `domain`).
    """
    value = (value or "").strip().lower()
    if not value:
        return None
    try:
        host = urlsplit(value if "//" in value else f"//{value}").hostname or ""
    except ValueError:
        host = ""
    host = host.rstrip(".")
    if not _DOMAIN.match(host):
        raise errors.Invalid(DOMAIN_MESSAGE, field="domain")
    return host


def company_country_normalise(value: str | None) -> str:
    """An ISO 3166-1 alpha-2 code, stored upper-case (`de` → `DE`), or blank; else `Invalid`."""
    value = (value or "").strip()
    value = value.upper() if value.isascii() else value  # "ß".upper() is "SS": no country
    if value and not _COUNTRY.match(value):
        raise errors.Invalid(COUNTRY_MESSAGE, field="country")
    return value


def _normalised(fields: dict) -> dict:
    if "domain" in fields:
        fields["domain"] = company_domain_normalise(fields["domain"])
    if "country" in fields:
        fields["country"] = company_country_normalise(fields["country"])
    return fields


def _ensure_domain_free(*, entity: Entity | UUID, domain: str | None, exclude_id=None) -> None:
    if not domain:
        return
    taken = Company.objects.for_entity(entity).filter(domain=domain).exclude(pk=exclude_id)
    ensure_unique(taken, message=DOMAIN_TAKEN_MESSAGE.format(domain=domain))


def company_sync_archived_at(company: Company) -> None:
    """`archivedAt` follows the status: set when it becomes inactive, cleared when active again
    (the bulk writes apply it to each row before their set-based statements)."""
    if company.status == CompanyStatus.INACTIVE and company.archived_at is None:
        company.archived_at = timezone.now()
    elif company.status == CompanyStatus.ACTIVE:
        company.archived_at = None


def _save(company: Company, *, entity: Entity | UUID) -> Company:
    def recheck() -> None:
        _ensure_domain_free(entity=entity, domain=company.domain, exclude_id=company.pk)
        custom_fields_conflict(company)

    custom_fields_ensure_unique(company)
    return save_unique(company, recheck=recheck)


@transaction.atomic
def company_create(*, entity: Entity, **fields) -> Company:
    """Create a company; a domain already used in the entity is a 409. Records `company.created`."""
    custom_values = custom_fields_take(fields, entity=entity, model=Company, partial=False)
    company = Company(entity=entity, **_normalised(fields))
    custom_fields_apply(company, custom_values, fresh=False)
    _ensure_domain_free(entity=entity, domain=company.domain)
    company_sync_archived_at(company)
    company = _save(company, entity=entity)
    changes.record_created(company)
    companies_refresh(company_ids=[company.pk], new=True)  # its duplicate pairs, in the same transaction
    return company


@transaction.atomic
def company_update(*, company: Company, **fields) -> Company:
    """Apply a partial update; status changes set or clear `archived_at`. Records `company.updated`
    (the row is locked first, so `previous` is what the update replaced)."""
    custom_values = custom_fields_take(fields, entity=company.entity_id, model=Company, partial=True)
    fields = _normalised(fields)
    before = changes.snapshot_fresh(company, lock=True)
    custom_fields_apply(company, custom_values, fresh=True)
    if "domain" in fields and fields["domain"] != company.domain:
        _ensure_domain_free(entity=company.entity_id, domain=fields["domain"], exclude_id=company.pk)
    for name, value in fields.items():
        setattr(company, name, value)
    company_sync_archived_at(company)
    company = _save(company, entity=company.entity_id)
    changes.record_updated(company, before)
    companies_refresh(company_ids=[company.pk])
    return company
