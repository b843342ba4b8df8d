"""Shared behaviour of the operator commands: one JSON object on stdout, errors on stderr."""

from __future__ import annotations

import json
import uuid

from django.core.management.base import BaseCommand, CommandError

from axiomatic.models import Entity, User
from axiomatic.rls import bypass_rls


class JsonCommand(BaseCommand):
    """Operator commands print exactly one JSON object, so scripts can parse their output.

    They are operator tools that work across entities (create one, add a member, issue a key,
    seed, check stuck emails), so each runs under the named row-level-security bypass.
    """

    def execute(self, *args, **options):
        with bypass_rls(f"operator command {self.__module__.rsplit('.', 1)[-1]}"):
            return super().execute(*args, **options)

    def emit(self, payload: dict) -> None:
        self.stdout.write(json.dumps(payload, default=str))

    @staticmethod
    def entity_from_arg(value: str) -> Entity:
        try:
            entity_id = uuid.UUID(value)
        except ValueError:
            raise CommandError(f"--entity must be a UUID, got {value!r}") from None
        entity = Entity.objects.filter(pk=entity_id).first()
        if entity is None:
            raise CommandError(f"No entity with id {value}")
        return entity

    @staticmethod
    def user_from_arg(email: str) -> User:
        user = User.objects.filter(email__iexact=email.strip()).first()
        if user is None:
            raise CommandError(f"No user with email {email}")
        return user
