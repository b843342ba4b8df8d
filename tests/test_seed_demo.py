"""`seed_demo` at volume: the shape of the data, both writers (COPY and the portable batched
inserts), several connections at once, repeatable values.

The command's contract (counts printed, bad input refused) is in tests/test_commands.py.
"""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db.models import Count, F, Q
from django.utils import timezone

from axiomatic.currencies import ISO_4217
from axiomatic.models import Membership
from crm.choices import ActivityStatus, ActivityType, CompanyRole, StageKind
from crm.management.commands import seed_demo
from crm.models import Activity, Company, CompanyMembership, Contact, Lead
from tests import factories


def seed(entity, **sizes) -> dict:
    out = io.StringIO()
    args = ["seed_demo", "--entity", str(entity.pk)]
    for name, value in sizes.items():
        args += [f"--{name}", str(value)]
    call_command(*args, stdout=out)
    return json.loads(out.getvalue())


def assert_realistic(entity, *, companies: int, contacts: int, leads: int, activities: int) -> None:
    now = timezone.now()
    oldest = now - timedelta(days=seed_demo.SPREAD_DAYS + 1)
    members = set(Membership.objects.filter(entity=entity).values_list("user_id", flat=True))

    company_rows = Company.objects.for_entity(entity)
    assert company_rows.count() == companies
    assert set(company_rows.values_list("role", flat=True)) == set(CompanyRole.values)
    assert not company_rows.filter(Q(created_at__lt=oldest) | Q(updated_at__gt=now)).exists()
    assert not company_rows.filter(updated_at__lt=F("created_at")).exists()
    assert set(company_rows.exclude(owner=None).values_list("owner_id", flat=True)) <= members
    archived = company_rows.filter(status="inactive")
    assert archived.exists() and not archived.filter(archived_at=None).exists()
    assert company_rows.values("name").distinct().count() > companies * 0.9  # varied names

    assert Contact.objects.for_entity(entity).count() == contacts
    primaries = CompanyMembership.objects.for_entity(entity).filter(is_primary=True)
    assert primaries.count() == contacts  # each contact at exactly one company
    assert not Contact.objects.for_entity(entity).annotate(n=Count("memberships")).exclude(n=1).exists()

    lead_rows = Lead.objects.for_entity(entity).select_related("stage")
    assert lead_rows.count() == leads
    kinds = {lead.stage.kind for lead in lead_rows}
    assert kinds == {StageKind.OPEN, StageKind.WON, StageKind.LOST}
    for lead in lead_rows:
        assert (lead.closed_at is not None) == (lead.stage.kind != StageKind.OPEN)
        assert lead.currency in ISO_4217
        assert lead.probability_pct == lead.stage.default_probability_pct
        assert lead.created_at <= lead.stage_changed_at <= lead.updated_at <= now
        if lead.contact_id:
            primary = CompanyMembership.objects.get(contact_id=lead.contact_id, is_primary=True)
            assert lead.company_id == primary.company_id
    assert len({lead.currency for lead in lead_rows}) > 1

    activity_rows = Activity.objects.for_entity(entity)
    assert activity_rows.count() == activities
    tasks = activity_rows.filter(type=ActivityType.TASK)
    assert tasks.exists() and not tasks.filter(due_at=None).exists()
    assert set(tasks.values_list("status", flat=True)) == set(ActivityStatus.values)
    assert not tasks.filter(status=ActivityStatus.COMPLETED, completed_at=None).exists()
    assert not activity_rows.exclude(type=ActivityType.TASK).exclude(status=ActivityStatus.COMPLETED).exists()
    assert activity_rows.exclude(lead=None).exists() and activity_rows.filter(lead=None).exists()
    linked = activity_rows.exclude(lead=None).select_related("lead")
    assert all(a.contact_id == a.lead.contact_id for a in linked)


@pytest.mark.django_db
@pytest.mark.parametrize("writer", ["copy", "portable"])
def test_seeded_rows_look_like_a_real_crm(entity, monkeypatch, writer):
    if writer == "portable":  # the SQLite demo's path, here on PostgreSQL
        monkeypatch.setattr(seed_demo._Writer, "copy_supported", staticmethod(lambda: False))
    sizes = {"companies": 300, "contacts": 200, "leads": 250, "activities": 400}
    assert seed(entity, **sizes, members=4, seed=11) == {"entityId": str(entity.pk), **sizes}
    assert Membership.objects.filter(entity=entity).count() == 4  # the owner and three new members
    assert_realistic(entity, **sizes)


@pytest.mark.django_db(transaction=True)
def test_several_connections_write_in_chunks(monkeypatch):
    """Outside a transaction each table is split over --jobs connections, CHUNK rows per COPY."""
    monkeypatch.setattr(seed_demo, "CHUNK", 40)
    entity = factories.make_entity(name="Parallel")
    sizes = {"companies": 170, "contacts": 90, "leads": 85, "activities": 130}
    assert seed(entity, **sizes, members=3, jobs=2)["companies"] == 170
    assert_realistic(entity, **sizes)


@pytest.mark.django_db
def test_the_same_seed_gives_the_same_values(user):
    first, second = factories.make_entity(owner=user), factories.make_entity(owner=user)
    for entity in (first, second):
        seed(entity, companies=30, contacts=10, leads=10, activities=10, seed=5)

    def names(entity):
        return list(Company.objects.for_entity(entity).order_by("domain", "name").values_list("name", "role"))

    assert names(first) == names(second)
    assert not set(Company.objects.for_entity(first).values_list("id", flat=True)) & set(
        Company.objects.for_entity(second).values_list("id", flat=True)
    )


@pytest.mark.django_db
def test_seeding_an_entity_twice_adds_rows_without_collisions(entity):
    seed(entity, companies=20, contacts=20, leads=5, activities=5, seed=1)
    seed(entity, companies=20, contacts=20, leads=5, activities=5, seed=1)
    assert Company.objects.for_entity(entity).count() == 40
    assert Contact.objects.for_entity(entity).exclude(email=None).values("email").distinct().count() == (
        Contact.objects.for_entity(entity).exclude(email=None).count()
    )


@pytest.mark.django_db
def test_an_entity_without_members_gets_unowned_rows():
    from axiomatic.services import entity_create

    entity = entity_create(name="Nobody")
    seed(entity, companies=5, contacts=5, leads=5, activities=5)
    assert not Company.objects.for_entity(entity).exclude(owner=None).exists()
