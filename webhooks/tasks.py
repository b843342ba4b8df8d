"""Celery tasks of webhook delivery and of the change feed's retention. Tasks take ids only.

`deliver_endpoint` is safe to run twice or late (the endpoint is claimed with a conditional
UPDATE; a second run finds it claimed, or nothing due), which is what makes `acks_late` and the
sweep's extra kicks harmless. Row-level security: a task works in its endpoint's entity; the
sweep and the clean-up read every entity under the named bypass.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Max, OuterRef, Subquery
from django.utils import timezone

from axiomatic import changes as feed_core
from axiomatic.celery import app
from axiomatic.db import is_postgres
from axiomatic.models import Change, EntityCounter
from axiomatic.rls import bypass_rls, entity_scope, row_entity_id
from webhooks import delivery
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.services import enqueue

logger = logging.getLogger("webhooks")

SWEEP_INTERVAL_SECONDS = float(getattr(settings, "WEBHOOK_SWEEP_SECONDS", 30))
CLEANUP_INTERVAL_SECONDS = 3600.0
CLEANUP_BATCH = 10_000


@shared_task(name="webhooks.deliver_endpoint", acks_late=True, soft_time_limit=60, time_limit=90, ignore_result=True)
def deliver_endpoint(endpoint_id: str) -> str:
    """Deliver the endpoint's waiting changes in order; queue the retry or the rest."""
    entity_id = row_entity_id(WebhookEndpoint, endpoint_id)
    if entity_id is None:
        return "gone"
    with entity_scope(entity_id):
        outcome = delivery.deliver(endpoint_id)
    if outcome.kind == "retry":
        enqueue([endpoint_id], countdown=outcome.delay)
    elif outcome.kind == "more":
        enqueue([endpoint_id])
    return outcome.kind


@shared_task(name="webhooks.send_test_event", acks_late=True, soft_time_limit=60, time_limit=90, ignore_result=True)
def send_test_event(endpoint_id: str, event: dict) -> str:
    entity_id = row_entity_id(WebhookEndpoint, endpoint_id)
    if entity_id is None:
        return "gone"
    with entity_scope(entity_id):
        return delivery.deliver_test(endpoint_id, event)


def due_endpoints() -> list[str]:
    """Enabled endpoints with changes after their place, not claimed (or the lease ran out) and
    not waiting for a retry: what a lost task message, a dead worker or a broker outage left."""
    last_seq = EntityCounter.objects.filter(entity_id=OuterRef("entity_id"), name=feed_core.SEQ_COUNTER).values("value")
    with bypass_rls("webhook sweep: endpoints of every entity with changes waiting"):
        rows = (
            WebhookEndpoint.objects.filter(delivery.claimable())
            .annotate(last_seq=Subquery(last_seq[:1]))
            .filter(last_seq__gt=F("delivered_seq"))
            .values_list("pk", flat=True)
        )
        return [str(pk) for pk in rows]


@shared_task(name="webhooks.sweep", ignore_result=True, soft_time_limit=60, time_limit=90)
def sweep() -> int:
    """Periodic: queue a delivery for every endpoint that has work and nobody working on it."""
    due = due_endpoints()
    queued = enqueue(due) if due else 0
    if due:
        logger.info("Webhook sweep: %s endpoint(s) due, %s queued", len(due), queued)
    return queued


def retention_cutoff():
    return timezone.now() - timedelta(days=float(getattr(settings, "CHANGES_RETENTION_DAYS", 35)))


@shared_task(name="webhooks.clean_up", ignore_result=True, soft_time_limit=600, time_limit=900)
def clean_up() -> dict:
    """Periodic: remove changes and delivery logs older than CHANGES_RETENTION_DAYS.

    Per entity, everything up to the highest `seq` older than the cutoff goes (a prefix of the
    feed, never a hole) and `changes.pruned` remembers it, so a cursor before it is a 410.
    """
    cutoff = retention_cutoff()
    removed = {"changes": 0, "deliveries": 0}
    with bypass_rls("retention: the change feed and webhook logs of every entity"):
        ends = Change.objects.filter(occurred_at__lt=cutoff).values("entity_id").annotate(top=Max("seq"))
        for end in list(ends):
            entity_id, top = end["entity_id"], end["top"]
            if top is None:
                continue
            while True:
                with transaction.atomic():
                    batch = list(
                        Change.objects.filter(entity_id=entity_id, seq__lte=top)
                        .order_by("seq")
                        .values_list("pk", flat=True)[:CLEANUP_BATCH]
                    )
                    if not batch:
                        break
                    removed["changes"] += Change.objects.filter(pk__in=batch).delete()[0]
                    _mark_pruned(entity_id, top)
        while ids := list(
            WebhookDelivery.objects.filter(attempted_at__lt=cutoff).values_list("pk", flat=True)[:CLEANUP_BATCH]
        ):
            removed["deliveries"] += WebhookDelivery.objects.filter(pk__in=ids).delete()[0]
    if any(removed.values()):
        logger.info("Change feed retention removed %s", removed)
    return removed


def _mark_pruned(entity_id, top: int) -> None:
    if is_postgres():
        table = EntityCounter._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (entity_id, name, value) VALUES (%s, %s, %s) ON CONFLICT (entity_id, name) "
                f"DO UPDATE SET value = GREATEST({table}.value, EXCLUDED.value)",
                [entity_id, feed_core.PRUNED_COUNTER, top],
            )
        return
    counter, _ = EntityCounter.objects.get_or_create(entity_id=entity_id, name=feed_core.PRUNED_COUNTER)
    if counter.value < top:
        EntityCounter.objects.filter(pk=counter.pk).update(value=top)


# `celery -A axiomatic beat` runs the sweep and the clean-up; set here so settings need no Celery entry.
app.conf.beat_schedule = {
    **app.conf.beat_schedule,
    "webhooks-sweep": {"task": "webhooks.sweep", "schedule": SWEEP_INTERVAL_SECONDS},
    "changes-clean-up": {"task": "webhooks.clean_up", "schedule": CLEANUP_INTERVAL_SECONDS},
}
