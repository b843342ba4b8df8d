"""Prepare the zero-setup demo: an entity with demo data, a user who can sign in, and an API key."""

from __future__ import annotations

import random

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.management.base import CommandError

from apikeys.models import SCOPES
from apikeys.services import api_key_issue
from axiomatic.management.commands._base import JsonCommand
from axiomatic.models import Entity, Membership, User
from axiomatic.services import entity_create, membership_ensure, user_get_or_create
from crm.management.commands.seed_demo import seed_entity

DEMO_EMAIL = "demo@example.com"
DEMO_PASSWORD = "demo-password"
DEMO_ENTITY = "Demo Company"
DEMO_NAME = "Demo User"


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
