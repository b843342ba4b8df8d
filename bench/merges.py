"""The merge rows of `bin/bench`: each sample merges a pair made for it in the large entity.

A merge is a write that removes one of its records, so every sample needs its own pair: two
contacts with 50 related rows each (leads, activities, memberships), or two companies, one of
which holds memberships of `MEMBERSHIPS` existing contacts (non-primary, so the data set's primary
companies stay as seeded). The pairs are written through the ORM in this process (not timed), the
merge is timed through the API like every other row, and everything a sample added is deleted
afterwards, so repeated runs leave the data set as it was.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

MEMBERSHIPS = 10_000
RELATED_PER_CONTACT = 50  # 20 leads, 25 activities, 5 memberships


@dataclass
class Made:
    """What the samples created, to delete afterwards."""

    contacts: list[uuid.UUID] = field(default_factory=list)
    companies: list[uuid.UUID] = field(default_factory=list)


def _bypass():
    from axiomatic.rls import bypass_rls

    return bypass_rls("bench: merge fixtures in the large entity")


def contact_pair(entity_id: str, made: Made) -> tuple[uuid.UUID, uuid.UUID]:
    """Two contacts of the entity, each with 50 related rows."""
    from django.db import transaction
    from django.utils import timezone

    from crm.models import Activity, Company, CompanyMembership, Contact, Lead, PipelineStage

    with _bypass(), transaction.atomic():
        stage = PipelineStage.objects.filter(entity_id=entity_id, kind="open").order_by("sort_order").first()
        companies = list(Company.objects.filter(entity_id=entity_id).order_by()[:5].values_list("pk", flat=True))
        pair = []
        for label in ("Survivor", "Merged"):
            contact = Contact.objects.create(
                entity_id=entity_id, first_name="Bench", last_name=f"{label} {uuid.uuid4().hex[:6]}"
            )
            made.contacts.append(contact.pk)
            Lead.objects.bulk_create(
                Lead(
                    entity_id=entity_id,
                    stage=stage,
                    title="Bench merge",
                    currency="EUR",
                    probability_pct=stage.default_probability_pct,
                    contact=contact,
                )
                for _ in range(20)
            )
            Activity.objects.bulk_create(
                Activity(
                    entity_id=entity_id,
                    type="call",
                    subject="Bench merge",
                    status="completed",
                    occurred_at=timezone.now(),
                    contact=contact,
                )
                for _ in range(25)
            )
            CompanyMembership.objects.bulk_create(
                CompanyMembership(entity_id=entity_id, contact=contact, company_id=company, is_primary=(n == 0))
                for n, company in enumerate(companies)
            )
            pair.append(contact.pk)
    return pair[0], pair[1]


def company_pair(entity_id: str, made: Made, memberships: int) -> tuple[uuid.UUID, uuid.UUID]:
    """Two companies; the second with non-primary memberships of `memberships` existing contacts."""
    from django.db import transaction

    from crm.models import Company, CompanyMembership, Contact

    with _bypass(), transaction.atomic():
        survivor = Company.objects.create(entity_id=entity_id, name=f"Bench Survivor {uuid.uuid4().hex[:6]}")
        merged = Company.objects.create(entity_id=entity_id, name=f"Bench Merged {uuid.uuid4().hex[:6]}")
        made.companies += [survivor.pk, merged.pk]
        contacts = Contact.objects.filter(entity_id=entity_id).order_by().values_list("pk", flat=True)[:memberships]
        CompanyMembership.objects.bulk_create(
            (
                CompanyMembership(entity_id=entity_id, contact_id=pk, company=merged, is_primary=False)
                for pk in contacts
            ),
            batch_size=2000,
        )
    return survivor.pk, merged.pk


def clean_up(entity_id: str, made: Made) -> None:
    """Delete what the samples made (the survivors and everything now pointing at them)."""
    from django.db import transaction

    from crm.models import Activity, Company, CompanyMembership, Contact, Lead, MergedRecord

    with _bypass(), transaction.atomic():
        Lead.objects.filter(entity_id=entity_id, contact_id__in=made.contacts).delete()
        Activity.objects.filter(entity_id=entity_id, contact_id__in=made.contacts).delete()
        CompanyMembership.objects.filter(company_id__in=made.companies).delete()
        Contact.objects.filter(pk__in=made.contacts).delete()
        Company.objects.filter(pk__in=made.companies).delete()
        MergedRecord.objects.filter(entity_id=entity_id, merged_id__in=made.contacts + made.companies).delete()


Timed = Callable[[str, dict], tuple[int, float, int | None]]


def measure(
    post: Timed,
    entity_id: str,
    *,
    kind: str,
    samples: int,
    memberships: int = MEMBERSHIPS,
    budget: float = 60.0,
) -> tuple[list[float], dict[int, int], list[int]]:
    """`samples` merges of fresh pairs (after one warm-up); p50 and friends come from the caller."""
    made = Made()
    timings: list[float] = []
    statuses: dict[int, int] = {}
    queries: list[int] = []
    started = time.perf_counter()
    try:
        for n in range(samples + 1):
            if n > 1 and time.perf_counter() - started > budget:
                break
            if kind == "contact":
                survivor, merged = contact_pair(entity_id, made)
                path = f"/api/crm/contacts/{survivor}/merge?entityId={entity_id}"
            else:
                survivor, merged = company_pair(entity_id, made, memberships)
                path = f"/api/crm/companies/{survivor}/merge?entityId={entity_id}"
            status, ms, count = post(path, {"mergeId": str(merged)})
            if n == 0:
                continue  # warm-up: the worker's first merge loads code and plans
            timings.append(ms)
            statuses[status] = statuses.get(status, 0) + 1
            if count is not None:
                queries.append(count)
    finally:
        clean_up(entity_id, made)
    return timings, statuses, queries
