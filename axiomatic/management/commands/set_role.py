from __future__ import annotations

from django.core.management.base import CommandError

from axiomatic import errors
from axiomatic.management.commands._base import JsonCommand
from axiomatic.models import Membership
from axiomatic.services import membership_set_role


class Command(JsonCommand):
    help = 'Change a member\'s role in an entity. Prints {"userId": ..., "role": ...}.'

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument("--entity", required=True)
        parser.add_argument("--role", required=True, choices=Membership.Role.values)

    def handle(self, *args, email, entity, role, **options):
        entity = self.entity_from_arg(entity)
        user = self.user_from_arg(email)
        try:
            membership = membership_set_role(entity=entity, user=user, role=role)
        except errors.DomainError as exc:
            raise CommandError(exc.message) from None
        self.emit({"userId": user.pk, "role": membership.role})
