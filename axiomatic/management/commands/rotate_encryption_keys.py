"""Re-encrypt every stored secret with the newest FIELD_ENCRYPTION_KEYS key.

Rotation: put a new key first in FIELD_ENCRYPTION_KEYS (keep the old ones after it), deploy, run
this command, then drop the old keys. Prints `{"rotated": n, "failed": [...]}`; exits non-zero
when a value cannot be decrypted with any configured key (nothing else is left half-done: each
row is rewritten in its own transaction under a row lock).
"""

from __future__ import annotations

from django.core.management.base import CommandError
from django.db import transaction

from axiomatic import crypto
from axiomatic.management.commands._base import JsonCommand


class Command(JsonCommand):
    help = "Re-encrypt every stored secret (mailbox tokens, webhook secrets) with the newest key."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=500)

    def handle(self, *args, batch_size: int, **options):
        rotated = 0
        failed: list[str] = []
        for model, fields in crypto.ENCRYPTED_FIELDS.items():
            ids = list(model._default_manager.order_by("pk").values_list("pk", flat=True))
            for start in range(0, len(ids), batch_size):
                for pk in ids[start : start + batch_size]:
                    with transaction.atomic():
                        row = model._default_manager.select_for_update().filter(pk=pk).first()
                        if row is None:
                            continue
                        try:
                            for name in fields:
                                setattr(row, name, crypto.reencrypt(getattr(row, name)))
                        except crypto.InvalidToken:
                            failed.append(str(pk))
                            continue
                        row.save(update_fields=[*fields])
                        rotated += 1
        self.emit({"rotated": rotated, "failed": failed})
        if failed:
            raise CommandError(f"{len(failed)} row(s) hold secrets no configured key can decrypt: {', '.join(failed)}")
