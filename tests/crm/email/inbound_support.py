"""Helpers of the inbound sync tests: mailboxes on the fake provider, and one sync run in-process."""

from __future__ import annotations

from axiomatic.rls import entity_scope
from crm.email.connections import connection_connect
from crm.email.inbound import SyncResult, connection_sync
from crm.models import OutboundEmailConnection
from crm.providers.base import Mailbox
from crm.providers.oauth import TokenSet

PROVIDER = {"gmail": "google", "outlook": "microsoft"}


def connect_mailbox(fake, *, entity, user, channel: str = "gmail", address: str | None = None, scope: str = ""):
    """A connection whose tokens the fake honours for `address` (as if consent happened)."""
    provider = PROVIDER[channel]
    address = address or fake.default_mailbox(provider)
    with fake.lock:
        token = fake.issue(provider, mailbox=address)
    tokens = TokenSet(
        access_token=token["access_token"], refresh_token=token["refresh_token"], expires_at=None, scope=scope
    )
    return connection_connect(
        entity=entity, channel=channel, mailbox=Mailbox(email_address=address), tokens=tokens, user=user
    )


def sync_now(connection: OutboundEmailConnection) -> SyncResult:
    """Run one sync of the mailbox in this process, as the task does (due now, in its entity)."""
    OutboundEmailConnection.objects.filter(pk=connection.pk).update(next_sync_at=None)
    with entity_scope(connection.entity_id):
        return connection_sync(connection_id=connection.pk)


def receive(fake, connection: OutboundEmailConnection, **message) -> dict:
    """A message arrives in the connection's mailbox (Gmail or Outlook)."""
    if connection.channel == "gmail":
        return fake.receive_gmail(connection.email_address, **message)
    if "text" in message:
        message["body"] = message.pop("text")
    if "message_id" in message:
        message["internet_message_id"] = message.pop("message_id")
    if "thread_id" in message:
        message["conversation_id"] = message.pop("thread_id")
    message.pop("in_reply_to", None)
    return fake.receive_outlook(connection.email_address, **message)
