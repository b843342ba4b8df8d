"""Issuing, verifying and revoking API keys.

Kept in one module so the admin, the settings page, the operator commands and the authentication
class agree on the key format, the hashing and what "usable" means.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db.models import OuterRef, Q, Subquery
from django.utils import timezone

from apikeys.models import SCOPES, ApiKey
from axiomatic.models import Membership
from axiomatic.replica import replica_pin_entity
from axiomatic.rls import bypass_rls, entity_scope

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


@functools.cache
def _keys_with_membership():
    """Keys with their user, entity and membership (id, role) in one query. Built once per process:
    every request authenticates, and assembling the subqueries cost more than running them. Never
    evaluated itself (each use filters a copy), so it holds no rows and no moment in time."""
    member = Membership.objects.filter(user=OuterRef("user"), entity=OuterRef("entity"))
    return ApiKey.objects.select_related("entity", "user").annotate(
        membership_id=Subquery(member.values("id")[:1]), membership_role=Subquery(member.values("role")[:1])
    )


def _key_with_secret(secret: str, digest: str, *, entity_id=None) -> ApiKey | None:
    """The usable (not revoked, not expired) key whose digest matches, with its user, entity and
    membership (id, role) read in the same query; only among `entity_id`'s keys when given."""
    candidates = _keys_with_membership().usable().filter(prefix=secret[: ApiKey.PREFIX_LENGTH])
    if entity_id is not None:
        candidates = candidates.for_entity(entity_id)
    for candidate in candidates:
        if hmac.compare_digest(candidate.secret_hash, digest):
            return candidate
    return None


def api_key_authenticate(secret: str, *, entity_id=None) -> ApiKey | None:
    """The usable key for `secret`, or None. Digests are compared in constant time.

    A key acts for its user *as a member of its entity*: it is usable only while that user is
    active and still a member, whatever path removed them (command, admin, SQL). The membership
    (with its current role) is read in the same query and attached as `api_key.membership`.

    Row-level security: `entity_id` is the entity the request names, already set as the
    transaction's entity by the caller; the key is looked for there first, at no extra cost. A key
    not found there (another entity's, or none at all), or a lookup without `entity_id`, runs under
    the named bypass, so the API can still tell a key of another entity (403) from no key (401).
    """
    if not secret.startswith(KEY_PREFIX) or len(secret) < ApiKey.PREFIX_LENGTH or len(secret) > 200:
        return None
    digest = _digest(secret)
    key = _key_with_secret(secret, digest, entity_id=entity_id) if entity_id is not None else None
    if key is None:
        with bypass_rls("API key lookup: which entity a key belongs to is known only once it is found"):
            key = _key_with_secret(secret, digest)
    if key is None or not key.user.is_active or key.membership_id is None:
        return None
    key.membership = Membership(id=key.membership_id, user=key.user, entity=key.entity, role=key.membership_role)
    key.membership._state.adding = False
    return key


def api_key_touch(api_key: ApiKey) -> None:
    """Record use now, writing at most once per minute per key (a conditional UPDATE, no read).

    Call it outside the request's transaction, as `ApiKeyLastUsedMiddleware` does once the
    response exists: inside the request the write would hold the key's row lock until commit
    (queueing every concurrent request of the key behind it), and a request that fails and rolls
    back would take the record of its use with it.
    """
    now = timezone.now()
    if api_key.last_used_at and now - api_key.last_used_at < LAST_USED_RESOLUTION:
        return
    api_key.last_used_at = now
    stale = Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
    with entity_scope(api_key.entity_id):  # after the request's transaction: the key's entity again
        ApiKey.objects.filter(stale, pk=api_key.pk).update(last_used_at=now)


def api_key_revoke(api_key: ApiKey) -> ApiKey:
    """Revoke a key; idempotent (a revoked key keeps its first revocation time)."""
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    return api_key


def api_keys_revoke_for_member(*, entity_id, user_id) -> int:
    """Revoke every usable key the user holds in the entity (they are no longer a member there)."""
    replica_pin_entity(entity_id)  # an UPDATE sends no post_save (apikeys.signals): pin here
    return ApiKey.objects.usable().filter(entity_id=entity_id, user_id=user_id).update(revoked_at=timezone.now())
