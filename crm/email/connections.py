"""Mailboxes connected by OAuth consent, and the access tokens that let us send from them.

Kept apart from delivery because the connection row is shared by every email sent from the
mailbox and is written by the connect/disconnect pages and the admin as well as the worker.
Tokens are stored encrypted on the row (`set_tokens` / `clear_tokens`).

A 401 refreshes the access token once, under a row lock on the connection, so concurrent
workers do not burn the refresh token in parallel; a refused refresh expires the connection,
and the user has to connect the mailbox again.
"""

from __future__ import annotations

import uuid

from django.db import IntegrityError, transaction
from django.utils import timezone

from axiomatic import errors
from axiomatic.models import Entity, Membership, User
from axiomatic.roles import is_admin
from crm.choices import ConnectionStatus
from crm.models import OutboundEmailConnection
from crm.providers.base import Mailbox, PermanentProviderError, RefreshRefused
from crm.providers.oauth import TokenSet, refresh_tokens


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


def connection_ensure_manageable_by(*, connection: OutboundEmailConnection, membership: Membership) -> None:
    """Whoever connected a mailbox may disconnect it; admins and owners may manage any (403)."""
    if connection.connected_by_id == membership.user_id or is_admin(membership):
        return
    raise errors.Forbidden(
        f"Only who connected a mailbox may disconnect it; other mailboxes need the admin role (your role is "
        f"{membership.role})."
    )


def connection_share(*, connection: OutboundEmailConnection, shared: bool) -> OutboundEmailConnection:
    """Mark a mailbox shared (every member may send through it) or personal again (admins only)."""
    if connection.shared != shared:
        connection.shared = shared
        connection.save(update_fields=["shared", "updated_at"])
    return connection


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
