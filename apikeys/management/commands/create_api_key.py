from __future__ import annotations

from datetime import timedelta

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError
from django.utils import timezone

from apikeys.services import api_key_issue
from axiomatic.management.commands._base import JsonCommand
from axiomatic.models import Membership, User
from axiomatic.services import entity_owner


class Command(JsonCommand):
    help = 'Issue an API key. Prints {"apiKeyId": ..., "key": "ak_..."}; the key is shown only here.'

    def add_arguments(self, parser):
        parser.add_argument("--entity", required=True)
        parser.add_argument("--scopes", required=True, help="Comma-separated, e.g. read:crm,write:crm")
        parser.add_argument("--user", default=None, help="Email of the key's user (default: the owner)")
        parser.add_argument("--name", default="API key")
        parser.add_argument("--expires-in-days", type=int, default=None)

    def handle(self, *args, entity, scopes, user, name, expires_in_days, **options):
        entity = self.entity_from_arg(entity)
        if user:
            owner = User.objects.filter(email__iexact=user.strip()).first()
            if owner is None:
                raise CommandError(f"No user with email {user}")
            if not Membership.objects.filter(user=owner, entity=entity).exists():
                raise CommandError(f"{user} is not a member of entity {entity.pk}")
        else:
            owner = entity_owner(entity)
            if owner is None:
                raise CommandError("The entity has no owner; pass --user EMAIL")
        expires_at = None
        if expires_in_days is not None:
            if expires_in_days < 0:
                raise CommandError("--expires-in-days must be 0 or more")
            expires_at = timezone.now() + timedelta(days=expires_in_days)
        scope_list = [scope.strip() for scope in scopes.split(",") if scope.strip()]
        try:
            issued = api_key_issue(entity=entity, user=owner, name=name, scopes=scope_list, expires_at=expires_at)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        self.emit({"apiKeyId": issued.api_key.pk, "key": issued.secret})
