"""API keys: how scripts and integrations authenticate.

A key belongs to one entity and one user, carries scopes, may expire and may be revoked. Only a
SHA-256 digest of the secret is stored (secrets are 256-bit random, so a slow hash adds nothing);
a short public prefix is kept to find the candidate row and to show the key in lists.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

SCOPES = ("read:crm", "write:crm", "read:marketing", "write:marketing")
SCOPE_CHOICES = [(scope, scope) for scope in SCOPES]


class ApiKeyQuerySet(models.QuerySet):
    def for_entity(self, entity) -> ApiKeyQuerySet:
        return self.filter(entity_id=getattr(entity, "pk", entity))

    def usable(self) -> ApiKeyQuerySet:
        now = timezone.now()
        return self.filter(revoked_at__isnull=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now)
        )


class ApiKey(models.Model):
    """A bearer credential bound to an entity and a user; see the module docstring."""

    PREFIX_LENGTH = 12  # "ak_" + 9 characters of the secret

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    entity = models.ForeignKey("axiomatic.Entity", on_delete=models.CASCADE, related_name="api_keys")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=PREFIX_LENGTH, db_index=True, editable=False)
    secret_hash = models.CharField(max_length=64, unique=True, editable=False)
    scopes = models.JSONField(default=list)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        verbose_name = "API key"
        ordering = ["-created_at", "id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def status(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.is_expired:
            return "expired"
        return "active"

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes
