"""Company writes: domain uniqueness (409 with the existing id) and the archive timestamp."""

from __future__ import annotations

from uuid import UUID

from django.db import transaction
from django.utils import timezone

from axiomatic import changes
from axiomatic.models import Entity
from axiomatic.uniqueness import ensure_unique, save_unique
from crm.choices import CompanyStatus
from crm.models import Company


def _ensure_domain_free(*, entity: Entity | UUID, domain: str | None, exclude_id=None) -> None:
    if not domain:
        return
    taken = Company.objects.for_entity(entity).filter(domain=domain).exclude(pk=exclude_id)
    ensure_unique(taken, message=f"A company with domain {domain} already exists.")


def _sync_archived_at(company: Company) -> None:
    if company.status == CompanyStatus.INACTIVE and company.archived_at is None:
        company.archived_at = timezone.now()
    elif company.status == CompanyStatus.ACTIVE:
        company.archived_at = None


def _save(company: Company, *, entity: Entity | UUID) -> Company:
    return save_unique(
        company, recheck=lambda: _ensure_domain_free(entity=entity, domain=company.domain, exclude_id=company.pk)
    )


@transaction.atomic
def company_create(*, entity: Entity, **fields) -> Company:
    """Create a company; a domain already used in the entity is a 409. Records `company.created`."""
    company = Company(entity=entity, **fields)
    _ensure_domain_free(entity=entity, domain=company.domain)
    _sync_archived_at(company)
    company = _save(company, entity=entity)
    changes.record_created(company)
    return company


@transaction.atomic
def company_update(*, company: Company, **fields) -> Company:
    """Apply a partial update; status changes set or clear `archived_at`. Records `company.updated`
    (the row is locked first, so `previous` is what the update replaced)."""
    before = changes.snapshot_fresh(company, lock=True)
    if "domain" in fields and fields["domain"] != company.domain:
        _ensure_domain_free(entity=company.entity_id, domain=fields["domain"], exclude_id=company.pk)
    for name, value in fields.items():
        setattr(company, name, value)
    _sync_archived_at(company)
    company = _save(company, entity=company.entity_id)
    changes.record_updated(company, before)
    return company
