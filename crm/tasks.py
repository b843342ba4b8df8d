"""Celery tasks of the CRM (outbound email, inbound sync). Tasks take ids only, never tokens or bodies.

`send_outbound_email` is idempotent (the row is claimed with a conditional UPDATE), which is
what makes `acks_late` safe: a message redelivered after a worker crash finds the row either
still `queued` (never claimed: sending it is correct) or already claimed (a no-op). Time limits
are far below the Redis broker's visibility timeout (3600 s), so a running task is never
redelivered to a second worker while it still works.
"""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.conf import settings

from axiomatic.celery import app
from axiomatic.metrics import record_outbound_email
from axiomatic.rls import entity_scope, row_entity_id
from crm.email.delivery import email_deliver
from crm.email.inbound import (
    SYNC_HARD_LIMIT_MARGIN_SECONDS,
    SYNC_SOFT_LIMIT_MARGIN_SECONDS,
    connection_sync,
    connections_due_for_sync,
    sync_enqueue,
)
from crm.email.queue import email_enqueue
from crm.email.stuck import emails_check_stuck
from crm.models import OutboundEmail, OutboundEmailConnection
from crm.services.custom_fields import custom_field_values_purge
from crm.services.duplicates import duplicates_refresh_ids

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


@shared_task(name="crm.refresh_duplicates", acks_late=True, soft_time_limit=600, time_limit=660, ignore_result=True)
def refresh_duplicates(entity_id: str, model_name: str, ids: list[str]) -> None:
    """Find again the duplicate pairs of contacts or companies a bulk write touched (idempotent:
    a redelivery finds the same pairs)."""
    with entity_scope(entity_id):
        duplicates_refresh_ids(model_name=model_name, ids=ids)


@shared_task(name="crm.check_stuck_outbound_emails", ignore_result=True, soft_time_limit=60, time_limit=90)
def check_stuck_outbound_emails() -> dict:
    """Periodic: re-queue overdue `queued` emails and report (log) emails stuck in `sending`."""
    return emails_check_stuck(sending_for=timedelta(minutes=15), queued_for=timedelta(minutes=5)).as_dict()


# One mailbox sync stops reading after EMAIL_SYNC_MAX_SECONDS (between pages); the limits leave room
# for the page in hand. Its lease (crm.email.inbound) outlives the hard limit.
SYNC_SOFT_TIME_LIMIT = settings.EMAIL_SYNC_MAX_SECONDS + SYNC_SOFT_LIMIT_MARGIN_SECONDS
SYNC_TIME_LIMIT = settings.EMAIL_SYNC_MAX_SECONDS + SYNC_HARD_LIMIT_MARGIN_SECONDS


@shared_task(
    name="crm.sync_mailbox",
    acks_late=True,
    soft_time_limit=SYNC_SOFT_TIME_LIMIT,
    time_limit=SYNC_TIME_LIMIT,
    ignore_result=True,
)
def sync_mailbox(connection_id: str) -> str:
    """Read what arrived in one mailbox since its last sync (replies, received mail from contacts).

    Idempotent (a lease per mailbox, a unique key per message), hence `acks_late`: a task
    redelivered after a crash re-reads from the stored cursor and records nothing twice. A mailbox
    with more waiting than one run may read is queued again at once.
    """
    entity_id = row_entity_id(OutboundEmailConnection, connection_id)
    if entity_id is None:
        return "skipped"
    with entity_scope(entity_id):
        result = connection_sync(connection_id=connection_id)
    if result.more:
        sync_enqueue(connection_id=connection_id)
    return result.outcome


@shared_task(name="crm.sync_mailboxes", ignore_result=True, soft_time_limit=60, time_limit=90)
def sync_mailboxes() -> int:
    """Periodic (beat, every EMAIL_SYNC_INTERVAL_SECONDS): one `sync_mailbox` task per due mailbox,
    so a slow or failing mailbox never delays the others."""
    queued = 0
    for connection_id in connections_due_for_sync():
        queued += sync_enqueue(connection_id=connection_id)
    return queued


# `celery -A axiomatic beat` runs these; set here so settings need no Celery-specific entry.
app.conf.beat_schedule = {
    **app.conf.beat_schedule,
    "crm-check-stuck-outbound-emails": {
        "task": "crm.check_stuck_outbound_emails",
        "schedule": STUCK_CHECK_INTERVAL_SECONDS,
    },
    "crm-sync-mailboxes": {
        "task": "crm.sync_mailboxes",
        "schedule": float(settings.EMAIL_SYNC_INTERVAL_SECONDS),
    },
}
