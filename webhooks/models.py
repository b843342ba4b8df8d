"""Webhook endpoints of an entity, with their delivery state, and the log of delivery attempts."""

from __future__ import annotations

from django.db import models

from axiomatic import crypto
from axiomatic.tenancy import TenantModel


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"  # the attempt is in flight
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class WebhookEndpoint(TenantModel):
    """A URL that receives the entity's changes, in `seq` order, signed per Standard Webhooks.

    Delivery state lives on the row (see `webhooks.delivery`): `delivered_seq` is the place in the
    entity's feed up to which everything matching was delivered (advanced only after a 2xx), the
    claim (`claim_token` until `claimed_until`) makes one delivery in flight per endpoint at most,
    and `failed_attempts` / `next_attempt_at` are the retry state of the change at the head.
    Secrets are stored encrypted (`FIELD_ENCRYPTION_KEYS`); the previous one signs too until
    `previous_secret_expires_at` after a rotation.
    """

    url = models.CharField(max_length=2000)
    event_types = models.JSONField(default=list)
    description = models.CharField(max_length=500, blank=True)
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=300, blank=True)
    secret_encrypted = models.TextField(editable=False)
    previous_secret_encrypted = models.TextField(blank=True, editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)

    delivered_seq = models.BigIntegerField(default=0)
    generation = models.IntegerField(default=0)  # bumped by replay: an older delivery does not move the place
    failed_attempts = models.IntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claim_token = models.UUIDField(null=True, blank=True, editable=False)
    claimed_until = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["entity", "created_at", "id"], name="webhookendpoint_entity_idx")]

    def __str__(self) -> str:
        return self.url

    @property
    def status(self) -> str:
        return "active" if self.enabled else "disabled"

    def set_secret(self, secret: str, *, previous: str | None = None, previous_expires_at=None) -> None:
        self.secret_encrypted = crypto.encrypt(secret)
        self.previous_secret_encrypted = crypto.encrypt(previous or "")
        self.previous_secret_expires_at = previous_expires_at if previous else None

    @property
    def secret(self) -> str:
        return crypto.decrypt(self.secret_encrypted)

    @property
    def previous_secret(self) -> str:
        return crypto.decrypt(self.previous_secret_encrypted)


class WebhookDelivery(TenantModel):
    """One attempt to deliver one change (or a `webhook.test`) to one endpoint."""

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event_id = models.CharField(max_length=40)
    event_type = models.CharField(max_length=64)
    seq = models.BigIntegerField(null=True, blank=True)
    attempt = models.IntegerField(default=1)
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    response_status = models.IntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True)  # at most 4 KB
    error = models.CharField(max_length=1000, blank=True)
    duration_ms = models.IntegerField(null=True, blank=True)
    attempted_at = models.DateTimeField()
    next_attempt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-attempted_at", "-id"]
        verbose_name_plural = "webhook deliveries"
        indexes = [
            models.Index(fields=["endpoint", "-attempted_at", "-id"], name="webhookdelivery_endpoint_idx"),
            models.Index(fields=["attempted_at"], name="webhookdelivery_attempted_idx"),
            # Attempts in flight (left by a dead worker): found at each claim without a scan.
            models.Index(fields=["endpoint"], name="webhookdelivery_pending_idx", condition=models.Q(status="pending")),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id} → {self.endpoint_id} ({self.status})"
