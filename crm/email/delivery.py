"""Delivering a queued email at most once: the worker's state machine.

Why it is shaped this way:

- Delivery claims the row with one conditional UPDATE (`queued` and due → `sending`, fresh
  `claim_token`, `attempts + 1`). Only the holder of that claim may write the outcome, so a task
  delivered twice, or run by two workers, sends once.
- A transient failure hands the row back as `queued` with `next_attempt_at` in the future:
  claimable again only once due, i.e. by the scheduled retry.
- A row found in `sending` is never sent again automatically (the provider may have accepted
  it); `crm.email.stuck` reports it.
- An access token about to expire, or rejected with a 401, is refreshed once through
  `crm.email.connections`.
"""

from __future__ import annotations

import logging
import random
import uuid
from dataclasses import dataclass
from datetime import timedelta

from cryptography.fernet import InvalidToken
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from axiomatic import changes
from axiomatic.representations import represent
from crm.choices import ActivityDirection, ActivityStatus, ActivityType, ConnectionStatus, EmailStatus, LeadEventKind
from crm.email.connections import connection_mark_expired, connection_refresh_access_token
from crm.models import Activity, OutboundEmail, OutboundEmailConnection
from crm.providers import provider_for
from crm.providers.base import (
    MAX_RETRY_AFTER_SECONDS,
    AccessTokenRejected,
    Checkpoint,
    OutgoingMessage,
    PermanentProviderError,
    ProviderError,
    RefreshRefused,
    TransientProviderError,
)
from crm.services.actors import Actor
from crm.services.timeline import timeline_record

logger = logging.getLogger("crm.email")

TOKEN_REFRESH_LEEWAY = timedelta(seconds=60)


@dataclass(frozen=True)
class DeliveryResult:
    """What one run of the send task did: skipped (nothing to claim), sent, failed or retry."""

    outcome: str
    retry_in: float | None = None


def _snapshot(email_id) -> dict | None:
    return changes.snapshot_fresh(OutboundEmail(pk=email_id))


def _record(email_id, before: dict | None, action: str = "updated") -> None:
    """The change feed's record of a state change (`outbound_email.updated`, `.sent`, `.failed`)."""
    row = changes.load(OutboundEmail, [email_id]).get(uuid.UUID(str(email_id)))
    if row is not None:
        changes.record([changes.update(row, before, action=action, actor=Actor.system())])


def _claim(email_id: uuid.UUID | str) -> uuid.UUID | None:
    now = timezone.now()
    token = uuid.uuid4()
    with transaction.atomic():
        before = _snapshot(email_id)
        claimed = (
            OutboundEmail.objects.filter(pk=email_id, status=EmailStatus.QUEUED)
            .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
            .update(
                status=EmailStatus.SENDING,
                claim_token=token,
                claimed_at=now,
                attempts=F("attempts") + 1,
                updated_at=now,
            )
        )
        if claimed:
            _record(email_id, before)
    return token if claimed else None


def _claimed(email: OutboundEmail, token: uuid.UUID):
    return OutboundEmail.objects.filter(pk=email.pk, status=EmailStatus.SENDING, claim_token=token)


def _outgoing(email: OutboundEmail) -> OutgoingMessage:
    return OutgoingMessage(
        from_address=email.from_address,
        from_name=email.from_name,
        to=list(email.to_addresses),
        cc=list(email.cc_addresses),
        bcc=list(email.bcc_addresses),
        subject=email.subject,
        html_body=email.html_body,
        text_body=email.text_body,
        message_id=email.message_id_header,
    )


def _send(email: OutboundEmail, token: uuid.UUID) -> tuple[str, str]:
    connection = (
        OutboundEmailConnection.objects.for_entity(email.entity_id).filter(pk=email.connection_id).first()
        if email.connection_id
        else None
    )
    if connection is None or connection.status != ConnectionStatus.ACTIVE:
        state = connection.status if connection else "gone"
        raise PermanentProviderError(f"The mailbox connection is {state}; reconnect it and send again.")

    access_token = connection.access_token
    refreshed = False
    expires_at = connection.token_expires_at
    if not access_token or (expires_at and expires_at <= timezone.now() + TOKEN_REFRESH_LEEWAY):
        access_token = connection_refresh_access_token(connection_id=connection.pk, stale_access_token=access_token)
        refreshed = True

    def save_checkpoint(value: str) -> None:
        _claimed(email, token).update(provider_draft_id=value, updated_at=timezone.now())

    checkpoint = Checkpoint(value=email.provider_draft_id, save=save_checkpoint)
    message = _outgoing(email)
    while True:
        try:
            with provider_for(email.channel, access_token=access_token) as provider:
                # The thread too: a received message in it answers this email (crm.email.inbound).
                return provider.send(message, checkpoint=checkpoint), provider.sent_thread_id
        except AccessTokenRejected as exc:
            if refreshed:
                connection_mark_expired(connection_id=connection.pk)
                raise PermanentProviderError(f"{exc} (even after refreshing the access token)") from None
            access_token = connection_refresh_access_token(connection_id=connection.pk, stale_access_token=access_token)
            refreshed = True


def retry_delay(*, attempts: int, retry_after: float | None) -> float:
    """Seconds before the next attempt: the provider's Retry-After, else exponential backoff
    from EMAIL_RETRY_BASE_SECONDS with jitter (50–100% of the step), at most 10 minutes."""
    if retry_after is not None:
        return min(retry_after, MAX_RETRY_AFTER_SECONDS)
    step = settings.EMAIL_RETRY_BASE_SECONDS * (2 ** max(attempts - 1, 0))
    return min(step * (0.5 + random.random() / 2), MAX_RETRY_AFTER_SECONDS)


def _mark_sent(email: OutboundEmail, token: uuid.UUID, provider_message_id: str, thread_id: str = "") -> DeliveryResult:
    now = timezone.now()
    with transaction.atomic():
        before = _snapshot(email.pk)
        updated = _claimed(email, token).update(
            status=EmailStatus.SENT,
            provider_message_id=provider_message_id[:500],
            provider_thread_id=thread_id[:500],
            sent_at=now,
            error="",
            next_attempt_at=None,
            updated_at=now,
        )
        if not updated:
            logger.error("Email %s was sent (%s) but its claim was taken away", email.pk, provider_message_id)
            return DeliveryResult("sent")
        email.refresh_from_db()
        activity = Activity.objects.create(
            entity_id=email.entity_id,
            type=ActivityType.EMAIL,
            direction=ActivityDirection.OUTBOUND,
            subject=email.subject[:200],
            body=email.text_body,
            status=ActivityStatus.COMPLETED,
            occurred_at=now,
            completed_at=now,
            lead_id=email.lead_id,
            company_id=email.company_id,
            contact_id=email.contact_id,
            created_by_id=email.created_by_id,
        )
        if email.connection_id:
            OutboundEmailConnection.objects.filter(pk=email.connection_id).update(last_used_at=now)
        if email.lead is not None:
            timeline_record(
                lead=email.lead,
                kind=LeadEventKind.EMAIL_SENT,
                actor=Actor.system(),
                summary=f'Email "{email.subject}" sent to {", ".join(email.to_addresses)}',
                data={**represent(email), "activityId": str(activity.pk)},
                occurred_at=now,
            )
        sent = changes.load(OutboundEmail, [email.pk])[email.pk]
        changes.record(  # one insert: outbound_email.sent and the email's activity.created
            [
                changes.update(sent, before, action="sent", actor=Actor.system()),
                changes.creation(activity, actor=Actor.system()),
            ]
        )
    logger.info("Email %s sent via %s", email.pk, email.channel)
    return DeliveryResult("sent")


def email_mark_failed(*, email: OutboundEmail, token: uuid.UUID | None, reason: str) -> DeliveryResult:
    """Mark the email `failed` and record it on the lead's timeline.

    With a claim `token`, only while that claim still holds; without one (an operator failing a
    row whose claim is unknown), while the row is still `queued` or `sending`. Returns `skipped`
    if the row had already moved on.
    """
    now = timezone.now()
    with transaction.atomic():
        before = _snapshot(email.pk)
        rows = (
            _claimed(email, token)
            if token
            else OutboundEmail.objects.filter(pk=email.pk, status__in=[EmailStatus.QUEUED, EmailStatus.SENDING])
        )
        if not rows.update(status=EmailStatus.FAILED, error=reason[:2000], next_attempt_at=None, updated_at=now):
            return DeliveryResult("skipped")
        email.refresh_from_db()
        if email.lead is not None:
            timeline_record(
                lead=email.lead,
                kind=LeadEventKind.EMAIL_FAILED,
                actor=Actor.system(),
                summary=f'Email "{email.subject}" failed: {reason}',
                data=represent(email),
                occurred_at=now,
            )
        _record(email.pk, before, action="failed")
    logger.warning("Email %s failed after %s attempt(s): %s", email.pk, email.attempts, reason)
    return DeliveryResult("failed")


def _retry_or_fail(email: OutboundEmail, token: uuid.UUID, exc: TransientProviderError) -> DeliveryResult:
    attempts = email.attempts
    if attempts >= settings.EMAIL_MAX_ATTEMPTS:
        return email_mark_failed(email=email, token=token, reason=f"Gave up after {attempts} attempts: {exc}")
    delay = retry_delay(attempts=attempts, retry_after=exc.retry_after)
    now = timezone.now()
    # Back to queued, but only claimable once due: by the scheduled retry, not by a stray duplicate.
    with transaction.atomic():
        before = _snapshot(email.pk)
        updated = _claimed(email, token).update(
            status=EmailStatus.QUEUED,
            claim_token=None,
            next_attempt_at=now + timedelta(seconds=delay),
            error=str(exc)[:2000],
            updated_at=now,
        )
        if updated:
            _record(email.pk, before)
    if not updated:
        return DeliveryResult("skipped")
    logger.info("Email %s attempt %s: %s; retrying in %.1fs", email.pk, attempts, exc, delay)
    return DeliveryResult("retry", retry_in=delay)


def email_deliver(*, email_id: uuid.UUID | str) -> DeliveryResult:
    """Claim the email and send it once; called by the Celery task with nothing but the id.

    Unexpected errors propagate and leave the row in `sending`: the provider may have accepted
    the message, so only an operator (via `outbound_email_check`) decides what happens to it.
    """
    token = _claim(email_id)
    if token is None:
        logger.info("Email %s: nothing to claim (already sent, being sent, not due or gone)", email_id)
        return DeliveryResult("skipped")
    email = OutboundEmail.objects.select_related("lead").get(pk=email_id)
    try:
        provider_message_id, thread_id = _send(email, token)
    except RefreshRefused as exc:
        connection_mark_expired(connection_id=email.connection_id)
        return email_mark_failed(email=email, token=token, reason=str(exc))
    except TransientProviderError as exc:
        return _retry_or_fail(email, token, exc)
    except ProviderError as exc:
        return email_mark_failed(email=email, token=token, reason=str(exc))
    except InvalidToken:
        reason = "The stored mailbox tokens cannot be decrypted; reconnect the mailbox."
        return email_mark_failed(email=email, token=token, reason=reason)
    return _mark_sent(email, token, provider_message_id, thread_id)
