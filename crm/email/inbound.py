"""Inbound sync: replies and received mail read back from the connected mailboxes.

Why it is shaped this way:

- Incremental, from "now": the first sync stores the provider's cursor for the present (Gmail's
  profile `historyId`, a Graph delta that starts at the sync's time) and reads nothing older; every
  later sync asks only for what arrived after the stored cursor.
- Only what concerns known contacts is stored: a message is recorded when its sender or one of its
  recipients is a contact of the entity; other mail is read and dropped, never written anywhere.
- At most once per entity, whatever happens: the activity carries a `message_key` (the RFC
  Message-ID, else the provider's id) under a unique constraint, and pages are inserted with
  ON CONFLICT DO NOTHING. A page's messages, its outbound-email marks, timeline events and changes,
  and the cursor after it are written in ONE transaction, so a worker killed mid-sync re-reads the
  page next time (recording nothing twice) and never skips one.
- One sync per mailbox at a time: a lease taken with a conditional UPDATE (as delivery claims an
  email); a dead worker's lease expires after the task's hard time limit.
- Failures wait for the next interval (or the provider's Retry-After, whichever is later) and are
  shown on the connection (`lastSyncError`); a refused token refresh expires the connection, as
  sending does. Each mailbox is its own task, so one bad mailbox never holds up the others.
- Cost: per page, a bounded number of queries whatever the number of messages (one for every
  address of the page, one for the emails answered, one bulk insert, ...), pinned by a test.
"""

from __future__ import annotations

import logging
import re
import time
import unicodedata
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.fernet import InvalidToken
from django.conf import settings
from django.db import transaction
from django.db.models import Case, DateTimeField, F, IntegerField, OuterRef, Q, Subquery, Value, When
from django.db.models.functions import Coalesce, Least
from django.utils import timezone

from axiomatic import changes, errors
from axiomatic.rls import bypass_rls
from axiomatic.timestamps import iso_utc
from crm.choices import ActivityDirection, ActivityStatus, ActivityType, ConnectionStatus, LeadEventKind
from crm.email.connections import connection_mark_expired, connection_refresh_access_token
from crm.email.content import html_sanitize, html_to_text
from crm.models import Activity, CompanyMembership, Contact, LeadEvent, OutboundEmail, OutboundEmailConnection
from crm.providers import provider_for
from crm.providers.base import (
    AccessTokenRejected,
    InboundMessage,
    InboxCursorExpired,
    MailProvider,
    PermanentProviderError,
    ProviderError,
    RefreshRefused,
    TransientProviderError,
)
from crm.services.actors import Actor

logger = logging.getLogger("crm.email.inbound")

MAX_BODY_BYTES = 100 * 1024
TOKEN_REFRESH_LEEWAY = timedelta(seconds=60)
# The sync task's time limits beyond EMAIL_SYNC_MAX_SECONDS (crm.tasks: room for the page in hand),
# and the lease beyond the hard limit, so that only a dead worker's lease ever lapses.
SYNC_SOFT_LIMIT_MARGIN_SECONDS = 30
SYNC_HARD_LIMIT_MARGIN_SECONDS = 45
SYNC_LEASE_MARGIN_SECONDS = 60
RECONNECT_FOR_READING = "This mailbox was connected without permission to read mail; reconnect it to sync replies."
_UUID = re.compile(r"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})@")


@dataclass(frozen=True)
class SyncResult:
    """What one sync run did: `synced`, `skipped` (not due, disabled or already syncing), `retry`
    (transient trouble: next interval), `expired` (refresh refused) or `failed` (permanent)."""

    outcome: str
    recorded: int = 0
    pages: int = 0
    more: bool = False


class _LeaseLost(Exception):
    """Another run took the mailbox over (ours outlived its lease): stop without writing."""


def sync_lease_seconds() -> int:
    """How long a sync's lease holds: the task's hard time limit plus a margin."""
    return settings.EMAIL_SYNC_MAX_SECONDS + SYNC_HARD_LIMIT_MARGIN_SECONDS + SYNC_LEASE_MARGIN_SECONDS


def _due_q(now: datetime) -> Q:
    # A beat tick that comes a little early still finds a mailbox due at the interval.
    leeway = timedelta(seconds=min(10.0, settings.EMAIL_SYNC_INTERVAL_SECONDS / 4))
    return Q(next_sync_at__isnull=True) | Q(next_sync_at__lte=now + leeway)


def _free_q(now: datetime) -> Q:
    return Q(sync_lease_until__isnull=True) | Q(sync_lease_until__lt=now)


# --- scheduling --------------------------------------------------------------------------------


@bypass_rls("inbound sync fan-out: finds the due mailboxes of every entity")
def connections_due_for_sync(*, limit: int = 5000) -> list[str]:
    """Ids of the active mailboxes with sync on that are due and not being synced (soonest first)."""
    now = timezone.now()
    due = (
        OutboundEmailConnection.objects.filter(status=ConnectionStatus.ACTIVE, sync_enabled=True)
        .filter(_due_q(now), _free_q(now))
        .order_by(F("next_sync_at").asc(nulls_first=True), "id")
        .values_list("pk", flat=True)[:limit]
    )
    return [str(pk) for pk in due]


def connection_request_sync(*, connection: OutboundEmailConnection) -> OutboundEmailConnection:
    """`POST …/sync`: make the mailbox due now (the caller queues the task after commit).

    Refused (409: the request is fine, the mailbox's state is not) when the mailbox cannot be
    synced: not active, sync turned off, or connected without the permission to read mail.
    """
    if connection.status != ConnectionStatus.ACTIVE:
        raise errors.Conflict(f"The mailbox connection is {connection.status}; reconnect it first.")
    if not connection.sync_enabled:
        raise errors.Conflict("Sync is turned off for this mailbox (syncEnabled is false).")
    if not connection.can_read_mail:
        raise errors.Conflict(RECONNECT_FOR_READING)
    connection.next_sync_at = timezone.now()
    OutboundEmailConnection.objects.filter(pk=connection.pk).update(next_sync_at=connection.next_sync_at)
    return connection


def connection_set_sync(*, connection: OutboundEmailConnection, enabled: bool) -> OutboundEmailConnection:
    """Turn a mailbox's inbound sync on or off; on again, it is due at once (from where it stopped)."""
    if connection.sync_enabled != enabled:
        connection.sync_enabled = enabled
        connection.next_sync_at = timezone.now() if enabled else connection.next_sync_at
        connection.save(update_fields=["sync_enabled", "next_sync_at", "updated_at"])
    return connection


def sync_enqueue(*, connection_id: str) -> bool:
    """Hand a mailbox id to the broker; never raises (the next beat tick finds it due anyway)."""
    from crm.tasks import sync_mailbox  # crm.tasks imports this module

    try:
        sync_mailbox.apply_async((str(connection_id),))
    except Exception as exc:
        logger.warning("Could not queue the sync of mailbox %s (%s)", connection_id, type(exc).__name__)
        return False
    return True


# --- the lease -----------------------------------------------------------------------------------


def _claim(connection_id) -> uuid.UUID | None:
    now = timezone.now()
    token = uuid.uuid4()
    claimed = (
        OutboundEmailConnection.objects.filter(pk=connection_id, status=ConnectionStatus.ACTIVE, sync_enabled=True)
        .filter(_due_q(now), _free_q(now))
        .update(sync_lease_token=token, sync_lease_until=now + timedelta(seconds=sync_lease_seconds()))
    )
    return token if claimed else None


def _leased(connection_id, token: uuid.UUID):
    return OutboundEmailConnection.objects.filter(pk=connection_id, sync_lease_token=token)


def _store_cursor(connection_id, token: uuid.UUID, cursor: str) -> None:
    if not _leased(connection_id, token).update(sync_cursor=cursor):
        raise _LeaseLost()


# --- what is stored of a message -----------------------------------------------------------------


def _clean_line(value: str, limit: int) -> str:
    """One line of text fit for a column: no NUL or other control characters, trimmed, cut."""
    value = "".join(" " if unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch for ch in value)
    return " ".join(value.split())[:limit]


def _cap_bytes(text: str, limit: int) -> str:
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", errors="ignore")


def inbound_body(message: InboundMessage) -> str:
    """The plain text stored for a received message: its text part, else its HTML sanitised (nh3)
    and turned to text; attachments named (never stored); at most 100 KB in all."""
    text = message.text if message.text.strip() else html_to_text(html_sanitize(message.html)) if message.html else ""
    text = text.replace("\x00", "").replace("\r\n", "\n").replace("\r", "\n").strip()
    footer = ""
    if message.attachments:
        names = ", ".join(_clean_line(name, 200) for name in message.attachments)
        footer = _cap_bytes(f"\n\n[Attachments, not stored: {names}]", 4096)
    return _cap_bytes(text, MAX_BODY_BYTES - len(footer.encode("utf-8"))) + footer


def message_key(message: InboundMessage, *, connection: OutboundEmailConnection) -> str:
    """A message's identity in the entity: its Message-ID (the same in every mailbox that got it),
    else the provider's id within this mailbox."""
    if message.message_id:
        return _clean_line(f"mid:{message.message_id}", 500)
    return _clean_line(f"{connection.channel}:{connection.pk}:{message.provider_id}", 500)


def _referenced_email_ids(messages: list[InboundMessage]) -> set[uuid.UUID]:
    """Outbound email ids named by In-Reply-To / References: ours are `<{email id}@{domain}>`."""
    found = set()
    for message in messages:
        for reference in message.references:
            match = _UUID.match(reference)
            if match:
                found.add(uuid.UUID(match.group(1)))
    return found


# --- recording a page ----------------------------------------------------------------------------


def _contacts_by_address(entity_id, addresses: set[str]) -> dict[str, Contact]:
    """The entity's contacts with these addresses (one query), each with its primary company."""
    if not addresses:
        return {}
    primary = CompanyMembership.objects.filter(contact=OuterRef("pk"), is_primary=True).values("company_id")[:1]
    contacts = (
        Contact.objects.for_entity(entity_id)
        .filter(email__in=sorted(addresses))
        .annotate(primary_company_id=Subquery(primary))
        .only("id", "email", "first_name", "last_name")
    )
    return {contact.email.lower(): contact for contact in contacts}


def _answered_emails(entity_id, connection_id, messages: list[InboundMessage]) -> tuple[dict, dict]:
    """Outbound emails these messages answer (one query): by id from the reply headers, and by the
    thread of this mailbox (newest sent email of each thread)."""
    references = _referenced_email_ids(messages)
    threads = {m.thread_id for m in messages if m.thread_id}
    if not references and not threads:
        return {}, {}
    emails = (
        OutboundEmail.objects.for_entity(entity_id)
        .filter(Q(pk__in=references) | Q(connection_id=connection_id, provider_thread_id__in=threads))
        .order_by(F("sent_at").asc(nulls_first=True), "created_at")
        .only("id", "lead_id", "provider_thread_id", "connection_id")
    )
    by_id, by_thread = {}, {}
    for email in emails:
        by_id[email.pk] = email
        if email.connection_id == connection_id and email.provider_thread_id:
            by_thread[email.provider_thread_id] = email  # the newest wins (ascending order)
    return by_id, by_thread


def _answered(message: InboundMessage, by_id: dict, by_thread: dict) -> OutboundEmail | None:
    for reference in message.references:
        match = _UUID.match(reference)
        if match and uuid.UUID(match.group(1)) in by_id:
            return by_id[uuid.UUID(match.group(1))]
    return by_thread.get(message.thread_id) if message.thread_id else None


def _contact_of(message: InboundMessage, contacts: dict[str, Contact], own_address: str) -> Contact | None:
    """The sender's contact, else the first recipient that is one (the mailbox itself never counts)."""
    for address in (message.from_address, *message.to, *message.cc):
        if address and address != own_address and address in contacts:
            return contacts[address]
    return None


def _mark_replied(entity_id, replies: dict[uuid.UUID, list[Activity]]) -> list:
    """`repliedAt` (first reply) and `replyCount` on the answered emails: one UPDATE, and their
    `outbound_email.replied` changes."""
    if not replies:
        return []
    before = {pk: changes.snapshot(row) for pk, row in changes.load(OutboundEmail, replies, lock=True).items()}
    counts = [When(pk=pk, then=Value(len(acts))) for pk, acts in replies.items()]
    firsts = [When(pk=pk, then=Value(min(a.occurred_at for a in acts))) for pk, acts in replies.items()]
    first = Case(*firsts, output_field=DateTimeField())
    OutboundEmail.objects.for_entity(entity_id).filter(pk__in=list(replies)).update(
        reply_count=F("reply_count") + Case(*counts, default=Value(0), output_field=IntegerField()),
        replied_at=Coalesce(Least(F("replied_at"), first), first),
        updated_at=timezone.now(),
    )
    after = changes.load(OutboundEmail, replies).values()
    return changes.updates(after, before, action="replied", actor=Actor.system())


def inbound_record_page(
    *, connection: OutboundEmailConnection, messages: list[InboundMessage], cursor: str, lease: uuid.UUID
) -> int:
    """Record a page of received messages and move the mailbox's cursor past it, in one transaction.

    Returns how many messages were new to the entity. Messages that concern no contact are dropped;
    messages already recorded (another mailbox, an earlier run) are skipped by the unique key.
    """
    entity_id = connection.entity_id
    own = connection.email_address.lower()
    addresses = {a for m in messages for a in (m.from_address, *m.to, *m.cc) if a and a != own}
    with transaction.atomic():
        contacts = _contacts_by_address(entity_id, addresses)
        relevant = [
            (m, contact)
            for m in messages
            if m.from_address != own and (contact := _contact_of(m, contacts, own)) is not None
        ]
        created = _insert(connection, relevant)
        _store_cursor(connection.pk, lease, cursor)
    return created


def _insert(connection: OutboundEmailConnection, relevant: list[tuple[InboundMessage, Contact]]) -> int:
    if not relevant:
        return 0
    entity_id = connection.entity_id
    by_id, by_thread = _answered_emails(entity_id, connection.pk, [m for m, _ in relevant])
    rows: dict[str, tuple[Activity, OutboundEmail | None, InboundMessage]] = {}
    for message, contact in relevant:
        key = message_key(message, connection=connection)
        if key in rows:
            continue
        answered = _answered(message, by_id, by_thread)
        activity = Activity(
            id=uuid.uuid4(),
            entity_id=entity_id,
            type=ActivityType.EMAIL,
            direction=ActivityDirection.INBOUND,
            subject=_clean_line(message.subject, 200) or "(no subject)",
            body=inbound_body(message),
            status=ActivityStatus.COMPLETED,
            occurred_at=message.occurred_at,
            completed_at=message.occurred_at,
            lead_id=answered.lead_id if answered else None,
            company_id=contact.primary_company_id,
            contact_id=contact.pk,
            message_key=key,
        )
        rows[key] = (activity, answered, message)
    # In key order: two mailboxes recording the same messages at once wait on each other, never deadlock.
    Activity.objects.bulk_create(
        sorted((a for a, _, _ in rows.values()), key=lambda a: a.message_key), ignore_conflicts=True
    )
    inserted = set(
        Activity.objects.for_entity(entity_id)
        .filter(pk__in=[a.pk for a, _, _ in rows.values()])
        .values_list("pk", flat=True)
    )
    new = [(a, email, m) for a, email, m in rows.values() if a.pk in inserted]
    if not new:
        return 0
    activities = [a for a, _, _ in new]
    created_changes = changes.creations(activities, actor=Actor.system())
    data_of = {record.object_id: record.data for record in created_changes}
    replies: dict[uuid.UUID, list[Activity]] = defaultdict(list)
    events = []
    for activity, email, message in new:
        if email is not None:
            replies[email.pk].append(activity)
        if activity.lead_id:
            sender = _clean_line(message.from_name, 100) or message.from_address
            events.append(
                LeadEvent(
                    entity_id=entity_id,
                    lead_id=activity.lead_id,
                    kind=LeadEventKind.EMAIL_RECEIVED,
                    occurred_at=activity.occurred_at,
                    actor_type=Actor.system().type,
                    actor_name=Actor.system().name,
                    summary=f'Email "{activity.subject}" received from {sender}'[:500],
                    data={**data_of[str(activity.pk)], "outboundEmailId": str(email.pk) if email else None},
                )
            )
    if events:
        LeadEvent.objects.bulk_create(events)
    changes.record([*created_changes, *_mark_replied(entity_id, replies)])
    return len(new)


# --- one sync run --------------------------------------------------------------------------------


class _Reader:
    """The mailbox's provider client with a fresh access token; a 401 refreshes it once."""

    def __init__(self, connection: OutboundEmailConnection):
        self.connection = connection
        self.refreshed = False
        token = connection.access_token
        expires_at = connection.token_expires_at
        if not token or (expires_at and expires_at <= timezone.now() + TOKEN_REFRESH_LEEWAY):
            token = connection_refresh_access_token(connection_id=connection.pk, stale_access_token=token)
            self.refreshed = True
        self.token = token
        self.provider: MailProvider = provider_for(connection.channel, access_token=token)

    def call(self, method: str, *args):
        while True:
            try:
                return getattr(self.provider, method)(*args)
            except AccessTokenRejected as exc:
                if self.refreshed:
                    connection_mark_expired(connection_id=self.connection.pk)
                    raise PermanentProviderError(f"{exc} (even after refreshing the access token)") from None
                self.token = connection_refresh_access_token(
                    connection_id=self.connection.pk, stale_access_token=self.token
                )
                self.refreshed = True
                self.provider.http.session.headers["Authorization"] = f"Bearer {self.token}"

    def close(self) -> None:
        self.provider.close()


def _gap_message(connection: OutboundEmailConnection, now: datetime) -> str:
    since = connection.last_synced_at or connection.created_at
    return f"history expired; mail between {iso_utc(since)} and {iso_utc(now)} was not read"


def _read(connection: OutboundEmailConnection, lease: uuid.UUID, started: float) -> tuple[int, int, bool, str]:
    """Read and record pages until the mailbox is caught up or the run's time or page budget is
    spent. Returns (recorded, pages, more waiting, gap message)."""
    reader = _Reader(connection)
    recorded = pages = 0
    gap = ""
    try:
        cursor = connection.sync_cursor
        if not cursor:  # first sync: from now on, no backfill
            _store_cursor(connection.pk, lease, reader.call("inbox_start"))
            return 0, 0, False, ""
        while True:
            try:
                page = reader.call("inbox_page", cursor)
            except InboxCursorExpired as exc:
                gap = _gap_message(connection, timezone.now())
                logger.warning("Mailbox %s: %s (%s)", connection.pk, gap, exc)
                _store_cursor(connection.pk, lease, reader.call("inbox_start"))
                return recorded, pages, False, gap
            recorded += inbound_record_page(
                connection=connection, messages=page.messages, cursor=page.cursor, lease=lease
            )
            cursor = page.cursor
            pages += 1
            if not page.more:
                return recorded, pages, False, gap
            if pages >= settings.EMAIL_SYNC_MAX_PAGES or time.monotonic() - started >= settings.EMAIL_SYNC_MAX_SECONDS:
                return recorded, pages, True, gap
    finally:
        reader.close()


def connection_sync(*, connection_id: uuid.UUID | str) -> SyncResult:
    """Sync one mailbox now, if it is due and nobody else is syncing it; called by the Celery task
    with nothing but the id, inside the mailbox's entity (row-level security)."""
    lease = _claim(connection_id)
    if lease is None:
        return SyncResult("skipped")
    connection = OutboundEmailConnection.objects.get(pk=connection_id)
    started = time.monotonic()
    now = timezone.now()
    interval = float(settings.EMAIL_SYNC_INTERVAL_SECONDS)
    delay = interval
    fields: dict = {}
    result = SyncResult("synced")
    try:
        if not connection.can_read_mail:
            raise PermanentProviderError(RECONNECT_FOR_READING)
        recorded, pages, more, gap = _read(connection, lease, started)
        result = SyncResult("synced", recorded=recorded, pages=pages, more=more)
        fields = {"last_synced_at": now, "last_sync_error": gap}
        if more:
            delay = 0.0  # the rest at the next beat tick
    except _LeaseLost:
        return SyncResult("skipped")
    except RefreshRefused as exc:
        connection_mark_expired(connection_id=connection.pk)
        result, fields = SyncResult("expired"), {"last_sync_error": str(exc)}
    except TransientProviderError as exc:
        delay = max(interval, exc.retry_after or 0.0)
        result, fields = SyncResult("retry"), {"last_sync_error": str(exc)}
    except ProviderError as exc:
        result, fields = SyncResult("failed"), {"last_sync_error": str(exc)}
    except InvalidToken:
        message = "The stored mailbox tokens cannot be decrypted; reconnect the mailbox."
        result, fields = SyncResult("failed"), {"last_sync_error": message}
    except Exception as exc:
        # Release the lease with the error shown, then let the task log the traceback.
        _release(connection.pk, lease, delay, {"last_sync_error": f"Unexpected error ({type(exc).__name__})"})
        raise
    _release(connection.pk, lease, delay, fields)
    logger.info(
        "Mailbox %s sync: %s, %s new message(s) in %s page(s)%s",
        connection.pk,
        result.outcome,
        result.recorded,
        result.pages,
        f"; {fields.get('last_sync_error')}" if fields.get("last_sync_error") else "",
    )
    return result


def _release(connection_id, lease: uuid.UUID, delay: float, fields: dict) -> None:
    if "last_sync_error" in fields:
        fields["last_sync_error"] = str(fields["last_sync_error"])[:2000]
    _leased(connection_id, lease).update(
        sync_lease_token=None,
        sync_lease_until=None,
        next_sync_at=timezone.now() + timedelta(seconds=delay),
        **fields,
    )
