"""Report outbound emails that are not progressing, and queue again those that can safely be.

- `queued` rows overdue (the broker was down when they were queued, or a retry got lost) are
  queued again: the worker's conditional claim makes that safe.
- `sending` rows older than `--sending-minutes` (the worker died mid-send) are listed and logged,
  never re-sent: the provider may have accepted them. After checking the mailbox, an operator can
  pass `--fail-stuck` to mark them failed.

Prints `{"stuckSending": [...], "requeued": [...], "markedFailed": [...]}`. The same check runs
every five minutes under `celery -A axiomatic beat` (crm.check_stuck_outbound_emails).
"""

from __future__ import annotations

from datetime import timedelta

from axiomatic.management.commands._base import JsonCommand
from crm.email.stuck import emails_check_stuck


class Command(JsonCommand):
    help = "List emails stuck in `sending` and re-queue overdue `queued` emails."

    def add_arguments(self, parser):
        parser.add_argument("--sending-minutes", type=float, default=15.0, help="`sending` longer than this is stuck")
        parser.add_argument("--queued-minutes", type=float, default=5.0, help="`queued` and overdue by this long")
        parser.add_argument("--no-requeue", action="store_true", help="only report")
        parser.add_argument("--fail-stuck", action="store_true", help="mark stuck `sending` rows failed")

    def handle(self, *args, sending_minutes: float, queued_minutes: float, no_requeue: bool, fail_stuck: bool, **kw):
        report = emails_check_stuck(
            sending_for=timedelta(minutes=sending_minutes),
            queued_for=timedelta(minutes=queued_minutes),
            requeue=not no_requeue,
            fail_sending=fail_stuck,
        )
        self.emit(report.as_dict())
