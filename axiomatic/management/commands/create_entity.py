from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError
from django.core.validators import validate_email
from django.db import transaction

from axiomatic.management.commands._base import JsonCommand
from axiomatic.models import Membership
from axiomatic.services import entity_create, membership_ensure, user_get_or_create

# Without --owner-email the entity still gets an owner (keys made without --user
# belong to the owner), at a reserved, undeliverable address; give it a real one with create_user.
PLACEHOLDER_OWNER_DOMAIN = "owner.invalid"


class Command(JsonCommand):
    help = 'Create an entity (tenant). Prints {"entityId": ..., "ownerUserId": ...}.'

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--owner-email", default=None)
        parser.add_argument("--currency", default="USD")
        parser.add_argument("--timezone", default="UTC")

    def handle(self, *args, name, owner_email, currency, timezone, **options):
        if not name.strip():
            raise CommandError("NAME must not be blank")
        if len(currency) != 3 or not currency.isalpha():
            raise CommandError(f"--currency must be an ISO 4217 code, got {currency!r}")
        if owner_email:
            try:
                validate_email(owner_email)
            except ValidationError:
                raise CommandError(f"--owner-email is not a valid address: {owner_email!r}") from None
        try:
            with transaction.atomic():  # a refused entity leaves no owner user behind
                owner = user_get_or_create(email=owner_email) if owner_email else None
                entity = entity_create(name=name, owner=owner, currency=currency, time_zone=timezone)
                if owner is None:
                    owner = user_get_or_create(email=f"owner-{entity.pk.hex}@{PLACEHOLDER_OWNER_DOMAIN}")
                    membership_ensure(user=owner, entity=entity, role=Membership.Role.OWNER)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        self.emit({"entityId": entity.pk, "ownerUserId": owner.pk})
