"""Queueing an email (`POST /outbound-email`): validate, store as `queued`, hand the id over.

Why it is shaped this way: the email row is written in the request's transaction and the task
is queued only after that transaction commits, carrying nothing but the email id. A broker that
is down at that moment costs nothing: the row stays `queued` and `emails_check_stuck` queues it
again. Everything that can be wrong with the request is rejected here, so the worker only ever
meets provider trouble.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from axiomatic import changes, errors
from axiomatic.models import Entity, Membership
from axiomatic.representations import represent
from axiomatic.roles import is_admin
from crm.choices import ConnectionStatus, EmailStatus, LeadEventKind
from crm.email.content import address_parse, html_sanitize, html_to_text, recipients_parse, subject_clean
from crm.models import Lead, OutboundEmail, OutboundEmailConnection
from crm.services.actors import Actor
from crm.services.timeline import timeline_record

logger = logging.getLogger("crm.email")

MAX_RECIPIENTS = 100
DAILY_WINDOW = timedelta(hours=24)


def connection_ensure_usable_by(*, connection: OutboundEmailConnection, membership: Membership) -> None:
    """A member sends through their own or shared mailboxes; admins and owners through any (403)."""
    if connection.shared or connection.connected_by_id == membership.user_id or is_admin(membership):
        return
    raise errors.Forbidden(
        "You may send only through your own or shared mailboxes; sending through another member's "
        f"mailbox needs the admin role (your role is {membership.role})."
    )


def recipients_ensure_few(to: list | None, cc: list | None, bcc: list | None) -> None:
    """At most MAX_RECIPIENTS addresses in all, counted before any address is parsed."""
    if sum(len(values or ()) for values in (to, cc, bcc)) > MAX_RECIPIENTS:
        raise errors.Invalid(f"At most {MAX_RECIPIENTS} recipients in all (to, cc and bcc together).", field="to")


def _ensure_daily_limit(connection: OutboundEmailConnection) -> None:
    """At most EMAIL_DAILY_LIMIT_PER_CONNECTION emails per connection in any 24 hours (429).

    The connection row is locked first, so concurrent sends through one mailbox count one by one
    and the cap holds exactly; sends through other mailboxes do not wait.
    """
    limit = settings.EMAIL_DAILY_LIMIT_PER_CONNECTION
    OutboundEmailConnection.objects.select_for_update().filter(pk=connection.pk).values_list("pk").first()
    since = timezone.now() - DAILY_WINDOW
    recent = OutboundEmail.objects.filter(connection=connection, created_at__gt=since)
    times = list(recent.order_by("-created_at").values_list("created_at", flat=True)[:limit])
    if len(times) < limit:
        return
    frees_at = times[-1] + DAILY_WINDOW  # when the oldest counted email leaves the window
    retry_after = max(int((frees_at - timezone.now()).total_seconds()) + 1, 1)
    raise errors.LimitExceeded(
        f"This mailbox has sent {limit} emails in the last 24 hours, its daily limit; try again later.",
        retry_after=retry_after,
    )


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
    sender: Membership,
) -> OutboundEmail:
    """Validate an email completely, store it as `queued`, and queue delivery after commit.

    Everything that can be wrong with the request is refused here, before anything is queued, so
    the worker only ever meets provider trouble. `sender` is the membership the request acts
    through: a member sends only through their own or shared mailboxes, admins through any.
    """
    connection_ensure_usable_by(connection=connection, membership=sender)
    if channel != connection.channel:
        raise errors.Invalid(
            f"channel {channel!r} does not match the connection's channel {connection.channel!r}.", field="channel"
        )
    if connection.status != ConnectionStatus.ACTIVE:
        raise errors.Invalid(
            f"The connection {connection.email_address} is {connection.status}; reconnect it first.",
            field="connection_id",
        )
    recipients_ensure_few(to, cc, bcc)  # before any parsing: a huge list costs nothing
    to_addresses = recipients_parse(to, field_name="to")
    cc_addresses = recipients_parse(cc, field_name="cc")
    bcc_addresses = recipients_parse(bcc, field_name="bcc")
    subject = subject_clean(subject)
    if not to_addresses:
        contact_email = lead.contact.email if lead.contact_id and lead.contact else None
        if not contact_email:
            raise errors.Invalid("No recipient: give `to`, or link the lead to a contact with an email.", field="to")
        to_addresses = [address_parse(contact_email, field_name="to")]
    html = html_sanitize(html_body or "")
    if not html.strip():
        html = ""
    text = (text_body or "").strip() or html_to_text(html)
    if not html and not text:
        raise errors.Invalid("The email has no content: give htmlBody (or textBody).", field="html_body")

    _ensure_daily_limit(connection)
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
        data=represent(email),
    )
    changes.record_created(email, actor=actor)
    email_id = str(email.pk)
    transaction.on_commit(lambda: email_enqueue(email_id=email_id), robust=True)
    return email


def email_enqueue(*, email_id: str, countdown: float | None = None) -> bool:
    """Hand the email id to the broker; never raises (the row is the source of truth).

    Without a broker (the demo runs tasks in-process) a delayed retry is left to
    `outbound_email_check`, because running it now would only find the row not yet due.
    """
    from crm.tasks import send_outbound_email  # crm.tasks imports this module

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
