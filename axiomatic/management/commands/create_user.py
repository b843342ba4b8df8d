from __future__ import annotations

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError
from django.core.validators import validate_email

from axiomatic.management.commands._base import JsonCommand
from axiomatic.models import Membership, User
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
        if password is not None:
            # The same validators as every other way of setting a password (AUTH_PASSWORD_VALIDATORS).
            candidate = User.objects.filter(email__iexact=email.strip()).first() or User(
                email=email.strip().lower(), name=name
            )
            try:
                validate_password(password, user=candidate)
            except ValidationError as exc:
                raise CommandError("--password refused: " + " ".join(exc.messages)) from None
        user = user_get_or_create(email=email, name=name, password=password)
        membership_ensure(user=user, entity=entity, role=role)
        self.emit({"userId": user.pk})
