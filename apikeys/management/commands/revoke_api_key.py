from __future__ import annotations

import uuid

from django.core.management.base import CommandError

from apikeys.models import ApiKey
from apikeys.services import api_key_revoke
from axiomatic.management.commands._base import JsonCommand


class Command(JsonCommand):
    help = 'Revoke an API key by id. Prints {"apiKeyId": ..., "revoked": true}.'

    def add_arguments(self, parser):
        parser.add_argument("id")

    def handle(self, *args, id, **options):
        try:
            key_id = uuid.UUID(id)
        except ValueError:
            raise CommandError(f"Not an API key id: {id!r}") from None
        api_key = ApiKey.objects.filter(pk=key_id).first()
        if api_key is None:
            raise CommandError(f"No API key with id {id}")
        api_key_revoke(api_key)
        self.emit({"apiKeyId": api_key.pk, "revoked": True})
