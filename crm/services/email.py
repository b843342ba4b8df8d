"""Outbound email: connecting mailboxes, queueing an email, and delivering it at most once.

Why it is shaped this way:

- The email row is written in the request's transaction and the task is queued only after that
  transaction commits, carrying nothing but the email id. A broker that is down at that moment
  costs nothing: the row stays `queued` and `emails_check_stuck` queues it again.
- Delivery claims the row with one conditional UPDATE (`queued` and due → `sending`, fresh
  `claim_token`, `attempts + 1`). Only the holder of that claim may write the outcome, so a task
  delivered twice, or run by two workers, sends once. A transient failure hands the row back as
  `queued` with `next_attempt_at` in the future: claimable again only once due, i.e. by the
  scheduled retry. A row found in `sending` is never sent again automatically (the provider may
  have accepted it); the stuck check reports it.
- A 401 refreshes the access token once, under a row lock on the connection, so concurrent
  workers do not burn the refresh token in parallel; a refused refresh expires the connection.
"""

from __future__ import annotations

import logging
import random
import re
import unicodedata
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.headerregistry import Address
from email.policy import default as default_policy
from html.parser import HTMLParser

import nh3
from cryptography.fernet import InvalidToken
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from axiomatic import errors
from axiomatic.models import Entity, User
from crm.choices import ActivityStatus, ActivityType, ConnectionStatus, EmailStatus, LeadEventKind
from crm.models import Activity, Lead, OutboundEmail, OutboundEmailConnection
from crm.providers import provider_for
from crm.providers.base import (
    MAX_RETRY_AFTER_SECONDS,
    AccessTokenRejected,
    Checkpoint,
    Mailbox,
    OutgoingMessage,
    PermanentProviderError,
    ProviderError,
    RefreshRefused,
    TransientProviderError,
)
from crm.providers.oauth import TokenSet, refresh_tokens
from crm.services.actors import Actor
from crm.services.timeline import timeline_record

logger = logging.getLogger("crm.email")

MAX_SUBJECT_LENGTH = 255
MAX_RECIPIENTS = 100
TOKEN_REFRESH_LEEWAY = timedelta(seconds=60)


# --- Content: sanitising, text part, addresses ------------------------------------------------


def html_sanitize(html: str) -> str:
    """Allow-list HTML (nh3): no scripts, styles, event handlers or javascript: links."""
    return nh3.clean(
        html,
        url_schemes={"http", "https", "mailto", "tel"},
        link_rel="noopener noreferrer",
        strip_comments=True,
    )


class _TextExtractor(HTMLParser):
    _BLOCKS = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "hr", "table"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._links: list[str | None] = []

    def handle_starttag(self, tag, attrs):
        if tag in self._BLOCKS:
            self.parts.append("\n")
        if tag == "li":
            self.parts.append("- ")
        if tag == "a":
            self._links.append(dict(attrs).get("href"))

    def handle_endtag(self, tag):
        if tag == "a" and self._links:
            href = self._links.pop()
            if href and not href.startswith("mailto:"):
                self.parts.append(f" ({href})")
        if tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data):
        self.parts.append(re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> str:
    """A readable plain-text part from (already sanitised) HTML, for the multipart/alternative."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = [line.strip() for line in "".join(parser.parts).splitlines()]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines))
    return text.strip()


def _has_control_characters(value: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in value)


def subject_clean(subject: str) -> str:
    """A subject safe for a header: ≤255 characters, no CR/LF or other control characters."""
    if "\r" in subject or "\n" in subject:
        raise errors.Invalid("The subject must not contain line breaks.", field="subject")
    if _has_control_characters(subject):
        raise errors.Invalid("The subject must not contain control characters.", field="subject")
    subject = subject.strip()
    if not subject:
        raise errors.Invalid("The subject must not be blank.", field="subject")
    if len(subject) > MAX_SUBJECT_LENGTH:
        raise errors.Invalid(f"The subject must be at most {MAX_SUBJECT_LENGTH} characters.", field="subject")
    return subject


def address_parse(value: object, *, field_name: str) -> str:
    """One recipient (`a@example.com` or `Name <a@example.com>`), normalised; else a 400."""
    invalid = errors.Invalid(f"{field_name}: {str(value)[:100]!r} is not a valid email address.", field=field_name)
    if not isinstance(value, str) or not value.strip() or len(value) > 320 or _has_control_characters(value):
        raise invalid
    try:
        header = default_policy.header_factory("To", value.strip())
        addresses = list(header.addresses)
    except Exception:  # the stdlib parser raises assorted errors on garbage
        raise invalid from None
    if header.defects or len(addresses) != 1:
        raise invalid
    address = addresses[0]
    try:
        validate_email(address.addr_spec)
    except ValidationError:
        raise invalid from None
    normalised = Address(display_name=address.display_name, username=address.username, domain=address.domain.lower())
    return str(normalised)


def _addr_spec(value: str) -> str:
    return default_policy.header_factory("To", value).addresses[0].addr_spec.lower()


def recipients_parse(values: list | None, *, field_name: str) -> list[str]:
    """Every address parsed (400 naming the field otherwise); duplicates dropped, order kept."""
    if values is None:
        return []
    result: list[str] = []
    seen: set[str] = set()
    for value in values:
        parsed = address_parse(value, field_name=field_name)
        spec = _addr_spec(parsed)
        if spec not in seen:
            seen.add(spec)
            result.append(parsed)
    return result


# --- Queueing ---------------------------------------------------------------------------------


def email_snapshot(email: OutboundEmail) -> dict:
    """The email as the API shows it (camelCase), for timeline events' `data`."""

    def iso(value: datetime | None) -> str | None:
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if value else None

    return {
        "id": str(email.pk),
        "status": email.status,
        "leadId": str(email.lead_id) if email.lead_id else None,
        "connectionId": str(email.connection_id) if email.connection_id else None,
        "channel": email.channel,
        "fromAddress": email.from_address,
        "subject": email.subject,
        "to": list(email.to_addresses),
        "cc": list(email.cc_addresses),
        "bcc": list(email.bcc_addresses),
        "providerMessageId": email.provider_message_id or None,
        "sentAt": iso(email.sent_at),
        "error": email.error or None,
        "attempts": email.attempts,
        "createdAt": iso(email.created_at),
    }


def email_queue(
    *,
    entity: Entity,
    lead: Lead,
    connection: OutboundEmailConnection,
    channel: str,
    subject: str,
    html_body: str,
    text_body: str | None = None,
    to: list | None = None,
    cc: list | None = None,
    bcc: list | None = None,
    actor: Actor,
) -> OutboundEmail:
    """Validate an email completely, store it as `queued`, and queue delivery after commit.

    Everything that can be wrong with the request is a 400 here, before anything is queued, so
    the worker only ever meets provider trouble.
    """
    if channel != connection.channel:
        raise errors.Invalid(
            f"channel {channel!r} does not match the connection's channel {connection.channel!r}.", field="channel"
        )
    if connection.status != ConnectionStatus.ACTIVE:
        raise errors.Invalid(
            f"The connection {connection.email_address} is {connection.status}; reconnect it first.",
            field="connection_id",
        )
    to_addresses = recipients_parse(to, field_name="to")
    cc_addresses = recipients_parse(cc, field_name="cc")
    bcc_addresses = recipients_parse(bcc, field_name="bcc")
    subject = subject_clean(subject)
    if not to_addresses:
        contact_email = lead.contact.email if lead.contact_id and lead.contact else None
        if not contact_email:
            raise errors.Invalid("No recipient: give `to`, or link the lead to a contact with an email.", field="to")
        to_addresses = [address_parse(contact_email, field_name="to")]
    if len(to_addresses) + len(cc_addresses) + len(bcc_addresses) > MAX_RECIPIENTS:
        raise errors.Invalid(f"At most {MAX_RECIPIENTS} recipients in all.", field="to")
    html = html_sanitize(html_body or "")
    if not html.strip():
        html = ""
    text = (text_body or "").strip() or html_to_text(html)
    if not html and not text:
        raise errors.Invalid("The email has no content: give htmlBody (or textBody).", field="html_body")

    email = OutboundEmail.objects.create(
        entity=entity,
        lead=lead,
        company_id=lead.company_id,
        contact_id=lead.contact_id,
        connection=connection,
        channel=connection.channel,
        from_address=connection.email_address,
        from_name=connection.display_name,
        subject=subject,
        html_body=html,
        text_body=text,
        to_addresses=to_addresses,
        cc_addresses=cc_addresses,
        bcc_addresses=bcc_addresses,
        status=EmailStatus.QUEUED,
        created_by=actor.user if getattr(actor.user, "pk", None) else None,
    )
    timeline_record(
        lead=lead,
        kind=LeadEventKind.EMAIL_QUEUED,
        actor=actor,
        summary=f'Email "{subject}" queued to {", ".join(to_addresses)}',
        data=email_snapshot(email),
    )
    email_id = str(email.pk)
    transaction.on_commit(lambda: email_enqueue(email_id=email_id), robust=True)
    return email


def email_enqueue(*, email_id: str, countdown: float | None = None) -> bool:
    """Hand the email id to the broker; never raises (the row is the source of truth).

    Without a broker (the demo runs tasks in-process) a delayed retry is left to
    `outbound_email_check`, because running it now would only find the row not yet due.
    """
    from crm.tasks import send_outbound_email

    if countdown and send_outbound_email.app.conf.task_always_eager:
        logger.info("Email %s will be retried by outbound_email_check (no broker)", email_id)
        return False
    try:
        send_outbound_email.apply_async((str(email_id),), countdown=countdown)
    except Exception as exc:
        logger.warning(
            "Could not queue email %s (%s); it stays queued for outbound_email_check", email_id, type(exc).__name__
        )
        logger.debug("Broker error while queueing email %s", email_id, exc_info=True)
        return False
    return True


# --- Connections ------------------------------------------------------------------------------


def connection_connect(
    *, entity: Entity, channel: str, mailbox: Mailbox, tokens: TokenSet, user: User | None
) -> OutboundEmailConnection:
    """Store a mailbox after OAuth consent; connecting the same address again updates that row."""
    address = mailbox.email_address.strip().lower()
    for _ in range(2):  # a concurrent first connect of the same mailbox loses the insert once
        try:
            with transaction.atomic():
                connection = (
                    OutboundEmailConnection.objects.for_entity(entity)
                    .select_for_update()
                    .filter(channel=channel, email_address=address)
                    .first()
                ) or OutboundEmailConnection(entity=entity, channel=channel, email_address=address)
                if mailbox.display_name:
                    connection.display_name = mailbox.display_name[:200]
                connection.status = ConnectionStatus.ACTIVE
                connection.revoked_at = None
                connection.connected_by = user
                connection.granted_scopes = tokens.scope
                connection.set_tokens(
                    access_token=tokens.access_token, refresh_token=tokens.refresh_token, expires_at=tokens.expires_at
                )
                connection.save()
                return connection
        except IntegrityError:
            continue
    raise IntegrityError("Could not store the mailbox connection")


def connection_revoke(*, connection: OutboundEmailConnection) -> OutboundEmailConnection:
    """Disconnect locally: forget the tokens and mark the row `revoked` (history keeps it)."""
    connection.status = ConnectionStatus.REVOKED
    connection.revoked_at = timezone.now()
    connection.clear_tokens()
    connection.save()
    return connection


def connection_mark_expired(*, connection_id: uuid.UUID | str | None) -> None:
    """The provider no longer honours the grant: the user has to reconnect the mailbox."""
    OutboundEmailConnection.objects.filter(pk=connection_id, status=ConnectionStatus.ACTIVE).update(
        status=ConnectionStatus.EXPIRED, updated_at=timezone.now()
    )


def connection_refresh_access_token(*, connection_id: uuid.UUID | str, stale_access_token: str) -> str:
    """A fresh access token, refreshing at most once however many workers ask at the same time.

    The connection row is locked while the token endpoint is called; a worker that waited on
    the lock finds the token already replaced and uses the new one without refreshing again.
    """
    refused: RefreshRefused | None = None
    with transaction.atomic():
        connection = OutboundEmailConnection.objects.select_for_update().get(pk=connection_id)
        if connection.status != ConnectionStatus.ACTIVE:
            raise PermanentProviderError(f"The mailbox connection is {connection.status}.")
        current = connection.access_token
        if current and current != stale_access_token:
            return current
        try:
            tokens = refresh_tokens(channel=connection.channel, refresh_token=connection.refresh_token)
        except RefreshRefused as exc:
            refused = exc
        else:
            connection.set_tokens(
                access_token=tokens.access_token, refresh_token=tokens.refresh_token, expires_at=tokens.expires_at
            )
            connection.save(
                update_fields=["access_token_encrypted", "refresh_token_encrypted", "token_expires_at", "updated_at"]
            )
            return tokens.access_token
    # Outside the atomic block, so the expiry is committed even though we raise.
    connection_mark_expired(connection_id=connection_id)
    raise refused


# --- Delivery ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryResult:
    """What one run of the send task did: skipped (nothing to claim), sent, failed or retry."""

    outcome: str
    retry_in: float | None = None


def _claim(email_id: uuid.UUID | str) -> uuid.UUID | None:
    now = timezone.now()
    token = uuid.uuid4()
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


def _send(email: OutboundEmail, token: uuid.UUID) -> str:
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
                return provider.send(message, checkpoint=checkpoint)
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


def _mark_sent(email: OutboundEmail, token: uuid.UUID, provider_message_id: str) -> DeliveryResult:
    now = timezone.now()
    with transaction.atomic():
        updated = _claimed(email, token).update(
            status=EmailStatus.SENT,
            provider_message_id=provider_message_id[:500],
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
                data={**email_snapshot(email), "activityId": str(activity.pk)},
                occurred_at=now,
            )
    logger.info("Email %s sent via %s", email.pk, email.channel)
    return DeliveryResult("sent")


def _mark_failed(email: OutboundEmail, token: uuid.UUID | None, reason: str) -> DeliveryResult:
    now = timezone.now()
    with transaction.atomic():
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
                data=email_snapshot(email),
                occurred_at=now,
            )
    logger.warning("Email %s failed after %s attempt(s): %s", email.pk, email.attempts, reason)
    return DeliveryResult("failed")


def _retry_or_fail(email: OutboundEmail, token: uuid.UUID, exc: TransientProviderError) -> DeliveryResult:
    attempts = email.attempts
    if attempts >= settings.EMAIL_MAX_ATTEMPTS:
        return _mark_failed(email, token, f"Gave up after {attempts} attempts: {exc}")
    delay = retry_delay(attempts=attempts, retry_after=exc.retry_after)
    now = timezone.now()
    # Back to queued, but only claimable once due: by the scheduled retry, not by a stray duplicate.
    updated = _claimed(email, token).update(
        status=EmailStatus.QUEUED,
        claim_token=None,
        next_attempt_at=now + timedelta(seconds=delay),
        error=str(exc)[:2000],
        updated_at=now,
    )
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
        provider_message_id = _send(email, token)
    except RefreshRefused as exc:
        connection_mark_expired(connection_id=email.connection_id)
        return _mark_failed(email, token, str(exc))
    except TransientProviderError as exc:
        return _retry_or_fail(email, token, exc)
    except ProviderError as exc:
        return _mark_failed(email, token, str(exc))
    except InvalidToken:
        return _mark_failed(email, token, "The stored mailbox tokens cannot be decrypted; reconnect the mailbox.")
    return _mark_sent(email, token, provider_message_id)


# --- Stuck rows -------------------------------------------------------------------------------


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
            email.claimed_at.isoformat(),
            email.attempts,
        )
        report.stuck_sending.append(
            {"id": str(email.pk), "entityId": str(email.entity_id), "claimedAt": email.claimed_at.isoformat()}
        )
        if fail_sending:
            reason = "Delivery state unknown: the worker stopped while sending; not retried automatically."
            if _mark_failed(email, email.claim_token, reason).outcome == "failed":
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
