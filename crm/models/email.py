"""Outbound email: connected mailboxes and the emails sent through them."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import models

from axiomatic import crypto
from axiomatic.tenancy import TenantModel
from crm.choices import ConnectionStatus, EmailChannel, EmailStatus
from crm.providers.oauth import grants_mail_reading


class OutboundEmailConnection(TenantModel):
    """A mailbox a member connected through the provider's OAuth consent, used to send as them.

    The OAuth tokens are stored only encrypted (Fernet, see `axiomatic.crypto`) in columns that are not
    editable, so no form, admin page or serializer can show them; code reads them through
    `access_token` / `refresh_token`. One row per entity, channel and address: connecting the same
    mailbox again refreshes the row instead of adding a twin.
    """

    channel = models.CharField(max_length=10, choices=EmailChannel.choices)
    email_address = models.EmailField(max_length=254)
    display_name = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=10, choices=ConnectionStatus.choices, default=ConnectionStatus.ACTIVE)
    connected_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    access_token_encrypted = models.TextField(blank=True, editable=False)
    refresh_token_encrypted = models.TextField(blank=True, editable=False)
    token_expires_at = models.DateTimeField(null=True, blank=True)
    granted_scopes = models.CharField(max_length=1000, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # A shared mailbox (a team inbox) may be used by every member; others only by who connected it.
    shared = models.BooleanField(default=False)
    # Inbound sync (crm.email.inbound): replies and received mail read back from the mailbox.
    sync_enabled = models.BooleanField(default=True)
    # Where the next sync starts: Gmail's historyId, or Graph's delta/next link. Written only in the
    # transaction that records the messages read up to it, so a crash re-reads instead of skipping.
    sync_cursor = models.TextField(blank=True, editable=False)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    last_sync_error = models.TextField(blank=True)
    next_sync_at = models.DateTimeField(null=True, blank=True)
    # One sync at a time per mailbox: a lease taken with a conditional UPDATE; a dead worker's expires.
    sync_lease_token = models.UUIDField(null=True, blank=True, editable=False)
    sync_lease_until = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["entity", "channel", "email_address"], name="email_connection_entity_address_uniq"
            )
        ]
        indexes = [
            models.Index(fields=["entity", "created_at", "id"], name="email_conn_entity_created_idx"),
            # The beat's fan-out: active mailboxes with sync on, soonest due first (every entity).
            models.Index(
                fields=["next_sync_at"],
                condition=models.Q(status=ConnectionStatus.ACTIVE, sync_enabled=True),
                name="email_conn_sync_due_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_channel_display()}: {self.email_address}"

    @property
    def access_token(self) -> str:
        return crypto.decrypt(self.access_token_encrypted)

    @property
    def refresh_token(self) -> str:
        return crypto.decrypt(self.refresh_token_encrypted)

    def set_tokens(self, *, access_token: str, refresh_token: str | None, expires_at: datetime | None) -> None:
        """Store new tokens encrypted; a refresh that returns no refresh token keeps the old one."""
        self.access_token_encrypted = crypto.encrypt(access_token)
        if refresh_token:
            self.refresh_token_encrypted = crypto.encrypt(refresh_token)
        self.token_expires_at = expires_at

    @property
    def can_read_mail(self) -> bool:
        """False for a mailbox connected before reading was asked for: it must be reconnected."""
        return grants_mail_reading(self.channel, self.granted_scopes)

    def clear_tokens(self) -> None:
        self.access_token_encrypted = ""
        self.refresh_token_encrypted = ""
        self.token_expires_at = None


class OutboundEmail(TenantModel):
    """One email to send from a connected mailbox about a lead, and what became of it.

    The row is written before anything is queued and is the only source of truth for delivery:
    the worker claims it with a conditional UPDATE (`queued` → `sending`, new `claim_token`), so
    a duplicate task delivery or a second worker finds nothing to claim. A transient failure puts
    it back to `queued` with `next_attempt_at` in the future, which only the scheduled retry (or
    the stuck-row check, once due) can claim. A row left in `sending` is never re-sent blindly.
    """

    lead = models.ForeignKey(
        "crm.Lead", null=True, blank=True, on_delete=models.SET_NULL, related_name="outbound_emails"
    )
    company = models.ForeignKey("crm.Company", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    contact = models.ForeignKey("crm.Contact", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    connection = models.ForeignKey(
        OutboundEmailConnection, null=True, blank=True, on_delete=models.SET_NULL, related_name="emails"
    )
    channel = models.CharField(max_length=10, choices=EmailChannel.choices)
    from_address = models.EmailField(max_length=254)
    from_name = models.CharField(max_length=200, blank=True)
    subject = models.CharField(max_length=255)
    html_body = models.TextField(blank=True)
    text_body = models.TextField(blank=True)
    to_addresses = models.JSONField(default=list, blank=True)
    cc_addresses = models.JSONField(default=list, blank=True)
    bcc_addresses = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=10, choices=EmailStatus.choices, default=EmailStatus.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claim_token = models.UUIDField(null=True, blank=True, editable=False)
    claimed_at = models.DateTimeField(null=True, blank=True)
    provider_draft_id = models.CharField(max_length=500, blank=True)
    provider_message_id = models.CharField(max_length=500, blank=True)
    # Gmail's threadId / Graph's conversationId of the sent message: a received message in the same
    # thread answers this email (crm.email.inbound).
    provider_thread_id = models.CharField(max_length=500, blank=True)
    replied_at = models.DateTimeField(null=True, blank=True)
    reply_count = models.PositiveIntegerField(default=0)
    sent_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "id"]
        indexes = [
            models.Index(fields=["entity", "lead", "-created_at"], name="email_entity_lead_idx"),
            models.Index(fields=["status", "next_attempt_at"], name="email_status_due_idx"),
            # The per-connection daily cap counts a connection's emails of the last 24 hours.
            models.Index(fields=["connection", "created_at"], name="email_connection_created_idx"),
            models.Index(
                fields=["entity", "provider_thread_id"],
                condition=~models.Q(provider_thread_id=""),
                name="email_entity_thread_idx",
            ),
        ]

    def __str__(self) -> str:
        return self.subject

    @property
    def message_id_header(self) -> str:
        """A stable RFC 5322 Message-ID, so a copy ever delivered twice is recognisable as one."""
        domain = self.from_address.rpartition("@")[2] or "axiomatic.invalid"
        return f"<{self.pk}@{domain}>"
