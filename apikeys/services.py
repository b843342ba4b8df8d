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
from axiomatic.db import is_postgres, read_connection
from axiomatic.models import Membership
from axiomatic.replica import replica_pin_entity
from axiomatic.rls import bypass_rls, entity_scope
from axiomatic.tenancy.database import mark_entered

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


@dataclass(frozen=True)
class _EnteringLookup:
    """The one round trip of an API request's authentication (PostgreSQL, inside the request's
    transaction): two statements sent together, run in order by the server.

    1. `set_config('app.entity_id', <the entity the request names>, true)`: the transaction's
       entity for row-level security from now on (what `enter_entity` would send on its own);
    2. the usable key with that prefix in that entity, with its entity, its user and the user's
       membership there (id, role), read under the entity just set.

    Two statements rather than one, because a policy's `current_setting` is read once per
    statement before any row is: a `set_config` inside the lookup's own statement would come too
    late for that statement. The SQL is written out once per process from the models' columns
    (assembling and compiling the equivalent ORM query cost a third of a page request).
    """

    sql: str
    # (model, attnames, converters) in the order of the columns; converters: the field's and the
    # backend's `from_db_value` steps (a JSON column arrives as text), as the ORM applies them.
    models: tuple[tuple[type, tuple[str, ...], tuple[tuple, ...]], ...]

    @classmethod
    @functools.cache
    def build(cls) -> _EnteringLookup:
        from django.db import connection

        from axiomatic.models import Entity, User
        from axiomatic.rls import ENTITY_SETTING

        quote = connection.ops.quote_name
        parts, columns = [], []
        for alias, model in (("k", ApiKey), ("e", Entity), ("u", User)):
            fields = tuple(model._meta.concrete_fields)
            columns += [f"{alias}.{quote(field.column)}" for field in fields]
            converters = []
            for field in fields:
                column = field.get_col(alias)
                steps = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
                converters.append((column, tuple(steps)))
            parts.append((model, tuple(field.attname for field in fields), tuple(converters)))
        columns += ["m.id", "m.role"]
        sql = (
            f"SELECT set_config('{ENTITY_SETTING}', %s, true); "
            f"SELECT {', '.join(columns)} FROM {quote(ApiKey._meta.db_table)} k "
            f"JOIN {quote(Entity._meta.db_table)} e ON e.id = k.entity_id "
            f"JOIN {quote(User._meta.db_table)} u ON u.id = k.user_id "
            f"LEFT JOIN LATERAL (SELECT id, role FROM {quote(Membership._meta.db_table)} "
            "WHERE user_id = k.user_id AND entity_id = k.entity_id LIMIT 1) m ON true "
            "WHERE k.prefix = %s AND k.entity_id = %s AND k.revoked_at IS NULL "
            "AND (k.expires_at IS NULL OR k.expires_at > %s)"
        )
        return cls(sql=sql, models=tuple(parts))

    def run(self, secret: str, digest: str, entity_id) -> ApiKey | None:
        connection = read_connection()  # a read request's key is read where its page is (the replica)
        entity = str(entity_id)
        params = [entity, secret[: ApiKey.PREFIX_LENGTH], entity, timezone.now()]
        with connection.cursor() as cursor:
            cursor.execute(self.sql, params)
            raw = cursor.cursor  # psycopg's own cursor: the second statement's rows follow the first's
            raw.nextset()
            rows = raw.fetchall()
        for row in rows:
            instances, start = [], 0
            for model, attnames, converters in self.models:
                values = list(row[start : start + len(attnames)])
                for index, (column, steps) in enumerate(converters):
                    for step in steps:
                        values[index] = step(values[index], column, connection)
                instances.append(model.from_db(connection.alias, attnames, values))
                start += len(attnames)
            key, entity_row, user = instances
            if not hmac.compare_digest(key.secret_hash, digest):
                continue
            key.entity, key.user = entity_row, user
            key.membership_id, key.membership_role = row[start], row[start + 1]
            return key
        return None


def _entering_lookup_possible(entity_id) -> bool:
    connection = read_connection()
    return entity_id is not None and is_postgres(connection) and connection.in_atomic_block


def api_key_authenticate(secret: str, *, entity_id=None, request=None) -> ApiKey | None:
    """The usable key for `secret`, or None. Digests are compared in constant time.

    A key acts for its user *as a member of its entity*: it is usable only while that user is
    active and still a member, whatever path removed them (command, admin, SQL). The membership
    (with its current role) is read in the same query and attached as `api_key.membership`.

    Row-level security: `entity_id` is the entity the request names. Inside the request's
    transaction (PostgreSQL) the same round trip makes it the transaction's entity and looks for
    the key there (`_EnteringLookup`), and `request` is marked as having entered it, so the entity
    check that follows costs nothing. A key not found there (another entity's, or none at all),
    or a lookup without `entity_id`, runs under the named bypass, so the API can still tell a key
    of another entity (403) from no key (401).
    """
    if not secret.startswith(KEY_PREFIX) or len(secret) < ApiKey.PREFIX_LENGTH or len(secret) > 200:
        return None
    digest = _digest(secret)
    key = None
    if _entering_lookup_possible(entity_id):
        key = _EnteringLookup.build().run(secret, digest, entity_id)
        if request is not None:
            mark_entered(request, entity_id)
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
