"""Which entity a request acts in, and as which membership: the one resolver.

The API (keys and sessions), the browser pages, the mailbox-connection flow and the idempotency
layer all ask the same questions — which entity ids did the request name, is this caller a member
there, what credential is this — and answer them here, so the rules cannot drift apart:

- an entity is named by `entityId` in the query string or JSON body, or the `x-entity-id` header;
  several places must agree (400, checked before membership, so a disagreement is never a 403);
- a caller acts in an entity only through a `Membership` (its role is read on every request);
- `Authorization: Bearer <token>` is parsed in exactly one way.

Failures are domain errors (`Invalid` → 400, `Forbidden` → 403) that each front end translates.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from axiomatic import errors
from axiomatic.models import Membership

ENTITY_PARAM = "entityId"
ENTITY_HEADER = "HTTP_X_ENTITY_ID"
BEARER = "bearer"


class MalformedAuthorization(ValueError):
    """An `Authorization` header that is not `Bearer <token>`."""


def bearer_token(meta: Mapping[str, Any]) -> str | None:
    """The token of `Authorization: Bearer <token>`; None without the header.

    Raises `MalformedAuthorization` for any other shape, which the API answers 401.
    """
    header = meta.get("HTTP_AUTHORIZATION")
    if not header:
        return None
    if isinstance(header, bytes):
        header = header.decode("latin-1")
    parts = header.split()
    if len(parts) != 2 or parts[0].lower() != BEARER:
        raise MalformedAuthorization("Malformed Authorization header; use 'Bearer ak_...'.")
    return parts[1]


def credential_fingerprint(token: str) -> str:
    """A stable, non-secret name for a bearer credential (for cache keys, never for auth)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def requested_entity_ids(*, query: Mapping[str, Any], body: Any, meta: Mapping[str, Any]) -> list[Any]:
    """Every value the request gives for its entity: query string, JSON body, `x-entity-id`."""
    values: list[Any] = []
    if hasattr(query, "getlist"):
        values.extend(query.getlist(ENTITY_PARAM))
    elif ENTITY_PARAM in query:
        values.append(query[ENTITY_PARAM])
    if isinstance(body, dict) and ENTITY_PARAM in body:
        values.append(body[ENTITY_PARAM])
    if meta.get(ENTITY_HEADER) is not None:
        values.append(meta[ENTITY_HEADER])
    return values


def parse_entity_id(value: Any) -> uuid.UUID:
    """One entity id, as a UUID (400 otherwise)."""
    if not isinstance(value, str):
        raise errors.Invalid("entityId must be a UUID string.")
    try:
        return uuid.UUID(value.strip())
    except ValueError:
        raise errors.Invalid("entityId must be a UUID.") from None


def single_entity_id(values: Iterable[Any]) -> uuid.UUID:
    """The one entity the request names: required, well-formed, and the same wherever given."""
    values = list(values)
    if not values:
        raise errors.Invalid("entityId is required (query string, JSON body or x-entity-id).")
    ids = {parse_entity_id(value) for value in values}
    if len(ids) > 1:
        raise errors.Invalid("entityId is given more than once with different values.")
    return ids.pop()


def membership_of(user, entity_id) -> Membership | None:
    """The user's membership of the entity (with the entity loaded), or None.

    Row-level security (axiomatic.rls): callers first make `entity_id` the transaction's entity
    (`set_request_entity`, `set_transaction_entity`, `entity_scope`), so the row is visible.
    """
    if user is None or not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
        return None
    return Membership.objects.select_related("entity").filter(user=user, entity_id=entity_id).first()


def require_membership(user, entity_id) -> Membership:
    """`membership_of`, or 403 — the same answer whether the entity exists or not."""
    membership = membership_of(user, entity_id)
    if membership is None:
        raise errors.Forbidden("You are not a member of that entity.")
    return membership
