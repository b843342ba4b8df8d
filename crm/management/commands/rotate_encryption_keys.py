"""Re-encrypt every stored secret with the newest FIELD_ENCRYPTION_KEYS key.

Rotation: put a new key first in FIELD_ENCRYPTION_KEYS (keep the old ones after it), deploy, run
this command, then drop the old keys. Prints `{"rotated": n, "failed": [...]}`; exits non-zero
when a value cannot be decrypted with any configured key (nothing else is left half-done: each
connection is rewritten in its own transaction under a row lock).
"""

from __future__ import annotations

from django.core.management.base import CommandError
from django.db import transaction

from axiomatic.management.commands._base import JsonCommand
from crm import crypto
from crm.models import OutboundEmailConnection

ENCRYPTED_FIELDS = ("access_token_encrypted", "refresh_token_encrypted")


class Command(JsonCommand):
    help = "Re-encrypt OAuth tokens of mailbox connections with the newest FIELD_ENCRYPTION_KEYS key."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=500)

    def handle(self, *args, batch_size: int, **options):
        rotated = 0
        failed: list[str] = []
        ids = list(OutboundEmailConnection.objects.order_by("pk").values_list("pk", flat=True))
        for start in range(0, len(ids), batch_size):
            for pk in ids[start : start + batch_size]:
                with transaction.atomic():
                    connection = OutboundEmailConnection.objects.select_for_update().filter(pk=pk).first()
                    if connection is None:
                        continue
                    try:
                        for name in ENCRYPTED_FIELDS:
                            setattr(connection, name, crypto.reencrypt(getattr(connection, name)))
                    except crypto.InvalidToken:
                        failed.append(str(pk))
                        continue
                    connection.save(update_fields=[*ENCRYPTED_FIELDS])
                    rotated += 1
        self.emit({"rotated": rotated, "failed": failed})
        if failed:
            raise CommandError(
                f"{len(failed)} connection(s) hold tokens no configured key can decrypt: {', '.join(failed)}"
            )
