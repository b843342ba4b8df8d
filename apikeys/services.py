"""Issuing, verifying and revoking API keys.

Kept in one module so the admin, the settings page, the operator commands and the authentication
class agree on the key format, the hashing and what "usable" means.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apikeys.models import SCOPES, ApiKey

KEY_PREFIX = "ak_"
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    secret: str  # the full "ak_..." string; shown once, never stored


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def scopes_validate(scopes: list[str]) -> list[str]:
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise ValidationError(f"Unknown scope(s): {', '.join(unknown)}. Known: {', '.join(SCOPES)}.")
    if not scopes:
        raise ValidationError("At least one scope is required.")
    return [scope for scope in SCOPES if scope in scopes]


def api_key_issue(
    *,
    entity,
    user,
    name: str,
    scopes: list[str],
    expires_at: datetime | None = None,
) -> IssuedKey:
    """Create a key and return it with its secret, which exists only in this return value."""
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    api_key = ApiKey.objects.create(
        entity=entity,
        user=user,
        name=(name or "API key").strip()[:100],
        prefix=secret[: ApiKey.PREFIX_LENGTH],
        secret_hash=_digest(secret),
        scopes=scopes_validate(list(scopes)),
        expires_at=expires_at,
    )
    return IssuedKey(api_key=api_key, secret=secret)


def api_key_authenticate(secret: str) -> ApiKey | None:
    """The usable key for `secret`, or None. Digests are compared in constant time."""
    if not secret.startswith(KEY_PREFIX) or len(secret) < ApiKey.PREFIX_LENGTH or len(secret) > 200:
        return None
    digest = _digest(secret)
    candidates = ApiKey.objects.usable().select_related("entity", "user").filter(prefix=secret[: ApiKey.PREFIX_LENGTH])
    for candidate in candidates:
        if hmac.compare_digest(candidate.secret_hash, digest):
            return candidate if candidate.user.is_active else None
    return None


def api_key_touch(api_key: ApiKey) -> None:
    """Record use, writing at most once per minute per key (a conditional UPDATE, no read).

    The write runs after the request's transaction commits, in its own short statement: inside the
    request it would hold the key's row lock until commit and queue every concurrent request of
    the same key behind it.
    """
    now = timezone.now()
    if api_key.last_used_at and now - api_key.last_used_at < LAST_USED_RESOLUTION:
        return
    api_key.last_used_at = now
    stale = Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
    transaction.on_commit(lambda: ApiKey.objects.filter(stale, pk=api_key.pk).update(last_used_at=now))


def api_key_revoke(api_key: ApiKey) -> ApiKey:
    """Revoke a key; idempotent (a revoked key keeps its first revocation time)."""
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    return api_key
