"""Bulk demo data for an entity: companies, contacts (with primary memberships), leads, activities.

Built for volume: rows are generated in memory and written with `bulk_create` in batches, so a
million companies take minutes. Timeline events are not generated for seeded leads.
"""

from __future__ import annotations

import random
import uuid
from datetime import timedelta
from decimal import Decimal

from django.core.management.base import CommandError
from django.db import transaction
from django.utils import timezone

from axiomatic.management.commands._base import JsonCommand
from axiomatic.models import Entity, Membership
from axiomatic.services import entity_create
from crm.choices import ActivityStatus, ActivityType, CompanyRole, StageKind
from crm.models import Activity, Company, CompanyMembership, Contact, Lead, PipelineStage

BATCH = 5000
_FIRST = ["Ada", "Grace", "Alan", "Linus", "Margaret", "Ken", "Barbara", "Dennis", "Frances", "Guido"]
_LAST = ["Lovelace", "Hopper", "Turing", "Torvalds", "Hamilton", "Thompson", "Liskov", "Ritchie", "Allen", "Rossum"]
_WORDS = ["Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Tyrell", "Cyberdyne", "Soylent", "Hooli"]
_SUFFIX = ["Ltd", "GmbH", "Inc", "BV", "SA", "LLC"]


def _batched(rows, model):
    buffer = []
    for row in rows:
        buffer.append(row)
        if len(buffer) >= BATCH:
            model.objects.bulk_create(buffer)
            buffer = []
    if buffer:
        model.objects.bulk_create(buffer)


class Command(JsonCommand):
    help = "Fill an entity with demo data in bulk. Prints the counts created."

    def add_arguments(self, parser):
        parser.add_argument("--entity", default=None, help="Entity UUID (default: a new 'Demo' entity)")
        parser.add_argument("--companies", type=int, default=50)
        parser.add_argument("--contacts", type=int, default=100)
        parser.add_argument("--leads", type=int, default=60)
        parser.add_argument("--activities", type=int, default=120)
        parser.add_argument("--seed", type=int, default=None, help="Random seed, for repeatable data")

    def handle(self, *args, entity, companies, contacts, leads, activities, seed, **options):
        sizes = {"companies": companies, "contacts": contacts, "leads": leads, "activities": activities}
        for name, value in sizes.items():
            if value < 0:
                raise CommandError(f"--{name} must be 0 or more")
        rng = random.Random(seed)
        entity_obj = self.entity_from_arg(entity) if entity else entity_create(name="Demo")
        counts = seed_entity(
            entity_obj, companies=companies, contacts=contacts, leads=leads, activities=activities, rng=rng
        )
        self.emit({"entityId": entity_obj.pk, **counts})


def seed_entity(entity: Entity, *, companies: int, contacts: int, leads: int, activities: int, rng) -> dict:
    """Write the demo rows; returns how many of each were created."""
    now = timezone.now()
    owners = list(Membership.objects.filter(entity=entity).values_list("user_id", flat=True)) or [None]
    stages = list(PipelineStage.objects.for_entity(entity).order_by("sort_order"))
    if leads and not stages:
        raise CommandError("The entity has no pipeline stages")

    with transaction.atomic():
        company_ids = [uuid.uuid4() for _ in range(companies)]
        roles = CompanyRole.values
        _batched(
            (
                Company(
                    id=cid,
                    entity=entity,
                    name=f"{rng.choice(_WORDS)} {rng.choice(_WORDS)} {i} {rng.choice(_SUFFIX)}",
                    role=rng.choice(roles),
                    owner_id=rng.choice(owners),
                    domain=f"c{i}-{cid.hex[:8]}.example.com",
                )
                for i, cid in enumerate(company_ids)
            ),
            Company,
        )
        contact_ids = [uuid.uuid4() for _ in range(contacts)]
        _batched(
            (
                Contact(
                    id=cid,
                    entity=entity,
                    first_name=rng.choice(_FIRST),
                    last_name=rng.choice(_LAST),
                    email=f"person{i}-{cid.hex[:8]}@example.com",
                    owner_id=rng.choice(owners),
                )
                for i, cid in enumerate(contact_ids)
            ),
            Contact,
        )
        contact_company: dict[uuid.UUID, uuid.UUID] = {}
        if company_ids:
            for cid in contact_ids:
                contact_company[cid] = rng.choice(company_ids)
            _batched(
                (
                    CompanyMembership(entity=entity, contact_id=cid, company_id=company_id, is_primary=True)
                    for cid, company_id in contact_company.items()
                ),
                CompanyMembership,
            )
        lead_ids = [uuid.uuid4() for _ in range(leads)]

        def make_lead(lead_id):
            stage = rng.choice(stages)
            contact_id = rng.choice(contact_ids) if contact_ids else None
            closed = stage.kind != StageKind.OPEN
            changed = now - timedelta(days=rng.randint(0, 60))
            return Lead(
                id=lead_id,
                entity=entity,
                title=f"{rng.choice(_WORDS)} deal {rng.randint(1, 9999)}",
                stage=stage,
                company_id=contact_company.get(contact_id) if contact_id else None,
                contact_id=contact_id,
                value=Decimal(rng.randint(5, 500) * 100),
                currency=entity.default_currency,
                probability_pct=stage.default_probability_pct,
                owner_id=rng.choice(owners),
                stage_changed_at=changed,
                closed_at=changed if closed else None,
            )

        _batched((make_lead(lead_id) for lead_id in lead_ids), Lead)

        def make_activity(_):
            kind = rng.choice(ActivityType.values)
            is_task = kind == ActivityType.TASK
            return Activity(
                entity=entity,
                type=kind,
                subject=f"{kind.title()} about {rng.choice(_WORDS)}",
                status=ActivityStatus.OPEN if is_task else ActivityStatus.COMPLETED,
                occurred_at=now - timedelta(hours=rng.randint(0, 24 * 60)),
                due_at=now + timedelta(days=rng.randint(-5, 10)) if is_task else None,
                lead_id=rng.choice(lead_ids) if lead_ids else None,
                assignee_id=rng.choice(owners) if is_task else None,
            )

        _batched((make_activity(i) for i in range(activities)), Activity)
    return {"companies": companies, "contacts": contacts, "leads": leads, "activities": activities}
