"""Finding emails that stopped progressing, for the periodic task and `outbound_email_check`.

Delivery never retries a row it cannot account for, so something has to look for them: a
`queued` row nobody picked up (the broker was down, a retry was lost) is safe to queue again
because the claim makes a duplicate harmless; a row left in `sending` (the worker died mid-send)
may already be in the recipient's inbox, so it is only reported, and failed on an operator's word.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from axiomatic.rls import bypass_rls
from axiomatic.timestamps import iso_utc
from crm.choices import EmailStatus
from crm.email.delivery import email_mark_failed
from crm.email.queue import email_enqueue
from crm.models import OutboundEmail

logger = logging.getLogger("crm.email")


@dataclass
class StuckReport:
    """Rows the check looked at: `sending` too long (reported), `queued` overdue (re-queued)."""

    stuck_sending: list[dict] = field(default_factory=list)
    requeued: list[str] = field(default_factory=list)
    marked_failed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "stuckSending": self.stuck_sending,
            "requeued": self.requeued,
            "markedFailed": self.marked_failed,
        }


@bypass_rls("stuck-email check: looks at the emails of every entity")
def emails_check_stuck(
    *,
    sending_for: timedelta = timedelta(minutes=15),
    queued_for: timedelta = timedelta(minutes=5),
    requeue: bool = True,
    fail_sending: bool = False,
    limit: int = 500,
) -> StuckReport:
    """Find emails that are not progressing.

    - `queued` and overdue by `queued_for` (the broker was down at enqueue time, or a scheduled
      retry was lost): queued again; the claim makes a duplicate harmless.
    - `sending` for longer than `sending_for` (far beyond the task's time limit: the worker died
      mid-send): logged and listed, never re-sent, because the provider may have accepted it.
      With `fail_sending` an operator who checked the mailbox marks them failed.
    """
    now = timezone.now()
    report = StuckReport()
    stuck = OutboundEmail.objects.filter(status=EmailStatus.SENDING, claimed_at__lt=now - sending_for).order_by(
        "claimed_at"
    )[:limit]
    for email in stuck:
        logger.warning(
            "Email %s (entity %s) has been sending since %s after %s attempt(s); delivery state unknown",
            email.pk,
            email.entity_id,
            iso_utc(email.claimed_at),
            email.attempts,
        )
        report.stuck_sending.append(
            {"id": str(email.pk), "entityId": str(email.entity_id), "claimedAt": iso_utc(email.claimed_at)}
        )
        if fail_sending:
            reason = "Delivery state unknown: the worker stopped while sending; not retried automatically."
            if email_mark_failed(email=email, token=email.claim_token, reason=reason).outcome == "failed":
                report.marked_failed.append(str(email.pk))
    if requeue:
        overdue = now - queued_for
        due = (
            OutboundEmail.objects.filter(status=EmailStatus.QUEUED)
            .filter(Q(next_attempt_at__isnull=True, created_at__lt=overdue) | Q(next_attempt_at__lt=overdue))
            .order_by("created_at")
            .values_list("pk", flat=True)[:limit]
        )
        for email_id in due:
            if email_enqueue(email_id=str(email_id)):
                report.requeued.append(str(email_id))
    return report
