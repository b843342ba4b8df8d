from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError
from django.core.validators import validate_email

from axiomatic.management.commands._base import JsonCommand
from axiomatic.models import Membership
from axiomatic.services import membership_ensure, user_get_or_create


class Command(JsonCommand):
    help = 'Create a user (or reuse one by email) and add them to an entity. Prints {"userId": ...}.'

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument("--entity", required=True)
        parser.add_argument("--name", default="")
        parser.add_argument("--role", default=Membership.Role.MEMBER, choices=Membership.Role.values)
        parser.add_argument("--password", default=None)

    def handle(self, *args, email, entity, name, role, password, **options):
        entity = self.entity_from_arg(entity)
        try:
            validate_email(email)
        except ValidationError:
            raise CommandError(f"Not a valid email address: {email!r}") from None
        user = user_get_or_create(email=email, name=name, password=password)
        membership_ensure(user=user, entity=entity, role=role)
        self.emit({"userId": user.pk})
