"""Prepare the zero-setup demo: an entity with demo data, a user who can sign in, and an API key."""

from __future__ import annotations

import random
from datetime import datetime, time, timedelta

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.management.base import CommandError
from django.utils import timezone

from apikeys.models import SCOPES
from apikeys.services import api_key_issue
from axiomatic.management.commands._base import JsonCommand
from axiomatic.models import Entity, Membership, User
from axiomatic.services import entity_create, membership_ensure, user_get_or_create
from crm.choices import ActivityType
from crm.management.commands.seed_demo import seed_entity
from crm.services.activities import activity_create
from crm.services.actors import Actor
from crm.services.companies import company_create
from crm.services.contacts import contact_create

DEMO_EMAIL = "demo@example.com"
DEMO_PASSWORD = "demo-password"
DEMO_ENTITY = "Demo Company"
DEMO_NAME = "Demo User"


def _demo_tasks(entity: Entity, user: User) -> None:
    """A few tasks of the demo user due today, tomorrow and later, so /crm/tasks fills every group."""
    now = timezone.now()
    end_of_today = datetime.combine(now.astimezone(entity.tzinfo).date(), time.max, tzinfo=entity.tzinfo)
    plan = [
        ("Call back about the renewal", min(now + timedelta(hours=2), end_of_today)),
        ("Send the revised proposal", now + timedelta(days=1)),
        ("Prepare the quarterly review", now + timedelta(days=4)),
        ("Chase the signed contract", now - timedelta(days=1)),
    ]
    for subject, due in plan:
        activity_create(
            entity=entity,
            actor=Actor.for_user(user),
            created_by=user,
            type=ActivityType.TASK,
            subject=subject,
            due_at=due,
            assignee=user,
        )


def _demo_duplicates(entity: Entity) -> None:
    """A few look-alikes, written through the services, so /crm/duplicates has pairs to merge."""
    acme = company_create(entity=entity, name="Acme Rockets, Inc.", website="https://www.acme-rockets.example")
    company_create(entity=entity, name="ACME Rockets Ltd", phone="+1 555 0100")
    contact_create(entity=entity, first_name="Ada", last_name="Lovelace", email="ada.lovelace@gmail.com", company=acme)
    contact_create(entity=entity, first_name="Ada", last_name="Lovelace", phone="+44 20 7946 0000", company=acme)
    contact_create(entity=entity, first_name="Grace", last_name="Hopper", email="gracehopper+crm@googlemail.com")
    contact_create(entity=entity, first_name="G.", last_name="Hopper", email="grace.hopper@gmail.com")


class Command(JsonCommand):
    help = "Create (once) the demo entity, user and data; issue a fresh API key and print how to use it."

    def add_arguments(self, parser):
        parser.add_argument("--port", default="8000")

    def handle(self, *args, port, **options):
        if not settings.DEBUG:
            raise CommandError(
                "demo_setup makes a staff user with a published password; it runs only with DEBUG=1 "
                "(a local demo), never in production."
            )
        # The documented password passes the validators like any other.
        validate_password(DEMO_PASSWORD, user=User(email=DEMO_EMAIL, name=DEMO_NAME))
        user = user_get_or_create(email=DEMO_EMAIL, name=DEMO_NAME, password=DEMO_PASSWORD)
        if not user.is_staff:
            user.is_staff = user.is_superuser = True
            user.save(update_fields=["is_staff", "is_superuser"])
        entity = Entity.objects.filter(name=DEMO_ENTITY, memberships__user=user).first()
        if entity is None:
            entity = entity_create(name=DEMO_ENTITY, owner=user)
            seed_entity(entity, companies=25, contacts=60, leads=40, activities=80, rng=random.Random(7))
            _demo_tasks(entity, user)
            _demo_duplicates(entity)
        membership_ensure(user=user, entity=entity, role=Membership.Role.OWNER)
        issued = api_key_issue(entity=entity, user=user, name="demo key", scopes=list(SCOPES))
        base = f"http://127.0.0.1:{port}"
        self.stdout.write(
            "\n".join(
                [
                    "",
                    "Axiomatic CRM demo is ready.",
                    f"  entity:   {entity.pk}",
                    f"  sign in:  {base}/accounts/login/  ({DEMO_EMAIL} / {DEMO_PASSWORD})",
                    f"  API key:  {issued.secret}",
                    f"  docs:     {base}/api/docs",
                    "",
                    "Try:",
                    f"  curl -H 'Authorization: Bearer {issued.secret}' \\",
                    f"       '{base}/api/crm/companies?entityId={entity.pk}'",
                    "",
                ]
            )
        )
