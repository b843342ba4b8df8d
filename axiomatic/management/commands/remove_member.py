from __future__ import annotations

from django.core.management.base import CommandError

from axiomatic import errors
from axiomatic.management.commands._base import JsonCommand
from axiomatic.services import membership_remove


class Command(JsonCommand):
    help = 'Remove a user from an entity and revoke their API keys there. Prints {"userId", "removed", "revokedKeys"}.'

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument("--entity", required=True)

    def handle(self, *args, email, entity, **options):
        entity = self.entity_from_arg(entity)
        user = self.user_from_arg(email)
        try:
            revoked = membership_remove(entity=entity, user=user)
        except errors.DomainError as exc:
            raise CommandError(exc.message) from None
        self.emit({"userId": user.pk, "removed": True, "revokedKeys": revoked})
