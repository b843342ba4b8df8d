"""Celery tasks of the CRM (outbound email). Tasks take ids only, never tokens or bodies.

`send_outbound_email` is idempotent (the row is claimed with a conditional UPDATE), which is
what makes `acks_late` safe: a message redelivered after a worker crash finds the row either
still `queued` (never claimed: sending it is correct) or already claimed (a no-op). Time limits
are far below the Redis broker's visibility timeout (3600 s), so a running task is never
redelivered to a second worker while it still works.
"""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task

from axiomatic.celery import app
from axiomatic.metrics import record_outbound_email
from axiomatic.rls import entity_scope, row_entity_id
from crm.email.delivery import email_deliver
from crm.email.queue import email_enqueue
from crm.email.stuck import emails_check_stuck
from crm.models import OutboundEmail
from crm.services.custom_fields import custom_field_values_purge

SEND_SOFT_TIME_LIMIT = 120
SEND_TIME_LIMIT = 150
STUCK_CHECK_INTERVAL_SECONDS = 300.0


@shared_task(
    name="crm.send_outbound_email",
    acks_late=True,
    soft_time_limit=SEND_SOFT_TIME_LIMIT,
    time_limit=SEND_TIME_LIMIT,
    ignore_result=True,
)
def send_outbound_email(email_id: str) -> str:
    """Deliver one queued email; a transient failure schedules the next attempt (same id).

    Row-level security: the task works in the email's entity, read from the row (axiomatic.rls).
    """
    with entity_scope(row_entity_id(OutboundEmail, email_id)):
        result = email_deliver(email_id=email_id)
    record_outbound_email(result.outcome)
    if result.outcome == "retry":
        email_enqueue(email_id=email_id, countdown=result.retry_in)
    return result.outcome


@shared_task(
    name="crm.purge_custom_field_values", acks_late=True, soft_time_limit=1800, time_limit=1900, ignore_result=True
)
def purge_custom_field_values(entity_id: str, object_type: str, storage_key: str) -> int:
    """Remove a deleted custom field's orphaned values (already invisible) from the entity's records,
    in batches; idempotent, so a redelivery only finds less to clean."""
    with entity_scope(entity_id):
        return custom_field_values_purge(entity_id=entity_id, object_type=object_type, storage_key=storage_key)


@shared_task(name="crm.check_stuck_outbound_emails", ignore_result=True, soft_time_limit=60, time_limit=90)
def check_stuck_outbound_emails() -> dict:
    """Periodic: re-queue overdue `queued` emails and report (log) emails stuck in `sending`."""
    return emails_check_stuck(sending_for=timedelta(minutes=15), queued_for=timedelta(minutes=5)).as_dict()


# `celery -A axiomatic beat` runs the stuck check; set here so settings need no Celery-specific entry.
app.conf.beat_schedule = {
    **app.conf.beat_schedule,
    "crm-check-stuck-outbound-emails": {
        "task": "crm.check_stuck_outbound_emails",
        "schedule": STUCK_CHECK_INTERVAL_SECONDS,
    },
}
