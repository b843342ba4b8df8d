"""Delivering an endpoint's changes in `seq` order, at least once, with retries.

Why it is shaped this way:

- One delivery in flight per endpoint: a task first claims the endpoint with one conditional
  UPDATE (enabled, not claimed or its claim's lease expired, retry due → a fresh `claim_token`
  until `claimed_until`). Only the claim's holder sends, and it sends one change at a time, the
  first matching one after `delivered_seq`; so an endpoint receives its changes in order.
- The place (`delivered_seq`) moves only after a 2xx, in the same UPDATE that checks the claim
  and the generation (a replay meanwhile bumps it): a worker killed mid-delivery leaves the
  place where it was, and whoever claims next (after the lease; the periodic sweep queues it)
  sends the same change again with the same `webhook-id`. Receivers deduplicate on it.
- A failure keeps the place and sets the retry time from `WEBHOOK_RETRY_SCHEDULE` (with jitter,
  or the receiver's `Retry-After`); the claim is released, the task queued with that countdown.
  A 410 disables the endpoint at once, as does the end of the schedule; the place is kept, so
  enabling it again delivers everything since.
- A task delivers for at most `WEBHOOK_BATCH_SECONDS`, then queues itself again: a busy
  endpoint never holds a worker for long, and one failing endpoint (in back-off, no claim) costs
  the others nothing.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from webhooks import feed, net, signing
from webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from webhooks.services import endpoint_secrets

logger = logging.getLogger("webhooks")

DEFAULT_RETRY_SCHEDULE = (5, 300, 1800, 7200, 18000, 36000, 36000, 50400, 72000, 86400)
MAX_CHANGES_PER_TASK = 500
USER_AGENT = "Axiomatic-Webhooks/1.0"


def retry_schedule() -> tuple[float, ...]:
    raw = getattr(settings, "WEBHOOK_RETRY_SCHEDULE", None)
    if isinstance(raw, str):
        raw = [part for part in raw.split(",") if part.strip()]
    return tuple(float(part) for part in raw) if raw else DEFAULT_RETRY_SCHEDULE


def retry_delay(failures: int, *, retry_after: float | None) -> float:
    """Seconds before the next attempt after `failures` failed ones: the receiver's Retry-After,
    else the schedule's step with ±20% jitter (so endpoints that failed together spread out)."""
    if retry_after is not None:
        return max(retry_after, 0.0)
    step = retry_schedule()[failures - 1]
    return step * (0.8 + 0.4 * random.random())


def _lease() -> timedelta:
    return timedelta(seconds=float(getattr(settings, "WEBHOOK_CLAIM_LEASE_SECONDS", 60)))


def _timeout() -> float:
    return float(getattr(settings, "WEBHOOK_TIMEOUT_SECONDS", 10))


@dataclass(frozen=True)
class Outcome:
    """What one run did: idle (nothing left), more (queue again now), retry (in `delay` s),
    busy (claimed elsewhere, disabled or not due), disabled."""

    kind: str
    delay: float | None = None
    delivered: int = 0


def claimable() -> Q:
    now = timezone.now()
    return (
        Q(enabled=True)
        & (Q(claim_token__isnull=True) | Q(claimed_until__lt=now))
        & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
    )


def _claim(endpoint_id) -> uuid.UUID | None:
    token = uuid.uuid4()
    now = timezone.now()
    claimed = (
        WebhookEndpoint.objects.filter(pk=endpoint_id)
        .filter(claimable())
        .update(claim_token=token, claimed_until=now + _lease())
    )
    if not claimed:
        return None
    # Attempts left in flight by a worker that died: they never got an answer recorded.
    WebhookDelivery.objects.filter(endpoint_id=endpoint_id, status=DeliveryStatus.PENDING, seq__isnull=False).update(
        status=DeliveryStatus.FAILED, error="Interrupted: the worker stopped before an answer was recorded."
    )
    return token


def _release(endpoint_id, token: uuid.UUID) -> None:
    WebhookEndpoint.objects.filter(pk=endpoint_id, claim_token=token).update(claim_token=None, claimed_until=None)


def _has_pending(endpoint_id) -> bool:
    endpoint = WebhookEndpoint.objects.filter(pk=endpoint_id).filter(claimable()).first()
    return endpoint is not None and feed.max_visible_seq(endpoint.entity_id) > endpoint.delivered_seq


def deliver(endpoint_id) -> Outcome:
    """Claim the endpoint and deliver its waiting changes in order (see the module docstring)."""
    token = _claim(endpoint_id)
    if token is None:
        return Outcome("busy")
    try:
        outcome = _deliver_claimed(endpoint_id, token)
    finally:
        _release(endpoint_id, token)
    if outcome.kind == "idle" and _has_pending(endpoint_id):
        # A change committed while we held the claim, and its kick found the endpoint claimed.
        return Outcome("more", delivered=outcome.delivered)
    return outcome


PAGE = 50  # changes read at once


def _deliver_claimed(endpoint_id, token: uuid.UUID) -> Outcome:
    deadline = time.monotonic() + float(getattr(settings, "WEBHOOK_BATCH_SECONDS", 20))
    endpoint = WebhookEndpoint.objects.filter(pk=endpoint_id, claim_token=token, enabled=True).first()
    if endpoint is None:
        return Outcome("busy")
    # Checked and resolved once for this run (at delivery time, not when the URL was saved), one
    # kept-alive connection to the checked address; the secrets decrypted once.
    sender = net.Sender(endpoint.url, timeout=_timeout())
    secrets = endpoint_secrets(endpoint)
    delivered = 0
    try:
        while delivered < MAX_CHANGES_PER_TASK:
            after, patterns = endpoint.delivered_seq, endpoint.event_types
            page = feed.read(endpoint.entity_id, after=after, patterns=patterns, limit=PAGE)
            for change in page.changes:
                outcome = _attempt(endpoint, token, change, sender, secrets)
                if outcome is not None:
                    return Outcome(outcome.kind, outcome.delay, delivered)
                delivered += 1
                if time.monotonic() > deadline:
                    return Outcome("more", delivered=delivered)
            if not page.has_more:
                # What is left below the bound matches no pattern: move past it.
                if page.next_seq > endpoint.delivered_seq and not _advance(endpoint, token, page.next_seq):
                    return Outcome("more", delivered=delivered)  # the claim was lost or a replay moved the place
                return Outcome("idle", delivered=delivered)
        return Outcome("more", delivered=delivered)
    finally:
        sender.close()


def _advance(endpoint: WebhookEndpoint, token, seq: int) -> bool:
    """Move the place to `seq`, if the claim still holds and no replay moved it meanwhile."""
    moved = WebhookEndpoint.objects.filter(
        pk=endpoint.pk,
        claim_token=token,
        enabled=True,
        generation=endpoint.generation,
        delivered_seq=endpoint.delivered_seq,
    ).update(delivered_seq=seq, claimed_until=timezone.now() + _lease())
    if moved:
        endpoint.delivered_seq = seq
    return bool(moved)


_SUCCEEDED_SQL = """
WITH moved AS (
    UPDATE {endpoint} SET delivered_seq = %(seq)s, failed_attempts = 0, next_attempt_at = NULL,
           claimed_until = %(until)s, last_success_at = %(now)s
     WHERE id = %(endpoint_id)s AND claim_token = %(token)s AND enabled AND generation = %(generation)s
       AND delivered_seq = %(expected)s
    RETURNING 1
)
UPDATE {delivery} SET status = %(status)s, response_status = %(response_status)s, response_body = %(body)s,
       error = '', duration_ms = %(duration)s, updated_at = %(now)s
 WHERE id = %(delivery_id)s
RETURNING (SELECT count(*) FROM moved)
"""


def _succeeded(endpoint: WebhookEndpoint, token, change, log: WebhookDelivery, result: net.HttpResult) -> bool:
    """Log the success and move the place past the change, in one statement; False when the
    claim was lost or a replay moved the place meanwhile."""
    now = timezone.now()
    sql = _SUCCEEDED_SQL.format(endpoint=WebhookEndpoint._meta.db_table, delivery=WebhookDelivery._meta.db_table)
    params = {
        "seq": change.seq,
        "until": now + _lease(),
        "now": now,
        "endpoint_id": endpoint.pk,
        "token": token,
        "generation": endpoint.generation,
        "expected": endpoint.delivered_seq,
        "status": DeliveryStatus.SUCCEEDED.value,
        "response_status": result.status,
        "body": result.body,
        "duration": result.duration_ms,
        "delivery_id": log.pk,
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        moved = bool(cursor.fetchone()[0])
    if moved:
        endpoint.delivered_seq, endpoint.failed_attempts = change.seq, 0
    return moved


def _attempt(endpoint: WebhookEndpoint, token, change, sender: net.Sender, secrets: list[str]) -> Outcome | None:
    """POST one change; None when it was delivered (the caller goes on), else how the run ends."""
    attempt = endpoint.failed_attempts + 1
    log = WebhookDelivery.objects.create(
        entity_id=endpoint.entity_id,
        endpoint=endpoint,
        event_id=change.event_id,
        event_type=change.type,
        seq=change.seq,
        attempt=attempt,
        status=DeliveryStatus.PENDING,
        attempted_at=timezone.now(),
    )
    body = feed.change_body(change)
    result = sender.post(body, _headers(secrets, change.event_id, body))
    if result.ok:
        return None if _succeeded(endpoint, token, change, log, result) else Outcome("more")
    now = timezone.now()
    with transaction.atomic():
        _log_result(log, result)
        log.status = DeliveryStatus.FAILED
        if result.status == 410:
            _disable(endpoint, token, "The endpoint answered 410 Gone.")
            outcome = Outcome("disabled")
        elif attempt > len(retry_schedule()):
            _disable(endpoint, token, f"Gave up after {attempt} attempts: {result.error}"[:300])
            outcome = Outcome("disabled")
        else:
            delay = retry_delay(attempt, retry_after=result.retry_after)
            log.next_attempt_at = now + timedelta(seconds=delay)
            WebhookEndpoint.objects.filter(pk=endpoint.pk, claim_token=token).update(
                failed_attempts=attempt, next_attempt_at=log.next_attempt_at
            )
            outcome = Outcome("retry", delay)
        log.save(update_fields=[*_LOGGED, "status", "next_attempt_at"])
    logger.info(
        "Webhook %s to endpoint %s (seq %s, attempt %s) failed: %s; %s",
        change.event_id,
        endpoint.pk,
        change.seq,
        attempt,
        result.error,
        outcome.kind,
    )
    return outcome


def _disable(endpoint: WebhookEndpoint, token, reason: str) -> None:
    WebhookEndpoint.objects.filter(pk=endpoint.pk, claim_token=token).update(
        enabled=False, disabled_reason=reason, failed_attempts=0, next_attempt_at=None, updated_at=timezone.now()
    )


_LOGGED = ["response_status", "response_body", "error", "duration_ms"]


def _log_result(log: WebhookDelivery, result: net.HttpResult) -> None:
    log.response_status = result.status
    log.response_body = result.body
    log.error = result.error[:1000]
    log.duration_ms = result.duration_ms


def _headers(secrets: list[str], event_id: str, body: bytes) -> dict[str, str]:
    return {
        **signing.headers(secrets, msg_id=event_id, timestamp=int(time.time()), body=body),
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
    }


def send(endpoint: WebhookEndpoint, *, event_id: str, body: bytes) -> net.HttpResult:
    """One signed POST of `body` (Standard Webhooks headers, this attempt's timestamp)."""
    return net.post(endpoint.url, body, _headers(endpoint_secrets(endpoint), event_id, body), timeout=_timeout())


def deliver_test(endpoint_id, event: dict) -> str:
    """Send a `webhook.test` event once, outside the ordered stream; logged like any attempt."""
    import orjson

    endpoint = WebhookEndpoint.objects.filter(pk=endpoint_id).first()
    if endpoint is None:
        return "gone"
    log = WebhookDelivery.objects.create(
        entity_id=endpoint.entity_id,
        endpoint=endpoint,
        event_id=event["id"],
        event_type=event["type"],
        seq=None,
        attempt=1,
        status=DeliveryStatus.PENDING,
        attempted_at=timezone.now(),
    )
    result = send(endpoint, event_id=event["id"], body=orjson.dumps(event))
    _log_result(log, result)
    log.status = DeliveryStatus.SUCCEEDED if result.ok else DeliveryStatus.FAILED
    log.save(update_fields=["status", "response_status", "response_body", "error", "duration_ms"])
    return log.status
