"""Which entity a request acts in, and through which membership: the one resolver.

The API (sessions and keys), API-key authentication, the idempotency layer, the browser pages,
the entity switcher, the mailbox-connection callback and the staff admin all ask the same
questions here, so the rules cannot drift apart:

- A request names its entity with `entityId` in the query string or JSON body, or the
  `x-entity-id` header (`named_entity_id`); a browser page may instead fall back on the entity
  remembered in its session, then on the user's first membership (`page_entity`). Where it is
  named in several places the values must agree.
- A caller acts in an entity only through a `Membership`, read on every request (so a role
  change or removal applies at once); the row is read inside that entity (row-level security).
- The staff admin works in the entities where its user is admin or owner
  (`administered_entity_ids`).

One set of statuses, raised as domain errors that each front end translates once: a missing,
malformed or disagreeing entity id is `Invalid` (400); an entity the caller is not a member of
(or that does not exist: the same answer, so nobody learns which entities exist) is `Forbidden`
(403).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from axiomatic import errors
from axiomatic.models import Entity, Membership
from axiomatic.rls import bypass_rls
from axiomatic.tenancy.database import enter_entity, mark_entered

ENTITY_PARAM = "entityId"
ENTITY_HEADER = "HTTP_X_ENTITY_ID"
SESSION_ENTITY_KEY = "entity_id"


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
    """The one entity the values name: required, well-formed, and the same wherever given."""
    values = list(values)
    if not values:
        raise errors.Invalid("entityId is required (query string, JSON body or x-entity-id).")
    ids = {parse_entity_id(value) for value in values}
    if len(ids) > 1:
        raise errors.Invalid("entityId is given more than once with different values.")
    return ids.pop()


def named_entity_id(*, query: Mapping[str, Any], body: Any = None, meta: Mapping[str, Any]) -> uuid.UUID:
    """The entity a request names (query string, JSON body, header); `Invalid` if none or unusable."""
    return single_entity_id(requested_entity_ids(query=query, body=body, meta=meta))


def named_entity_id_or_none(*, query: Mapping[str, Any], body: Any = None, meta: Mapping[str, Any]):
    """`named_entity_id`, or None where it would be refused (the refusal is answered later, once)."""
    try:
        return named_entity_id(query=query, body=body, meta=meta)
    except errors.Invalid:
        return None


def membership_of(user, entity_id) -> Membership | None:
    """The user's membership of the entity (with the entity loaded), or None.

    Callers make `entity_id` the transaction's entity first (`enter_entity`, `entity_scope`), so
    the row is visible under row-level security; `require_membership` does it itself.
    """
    if user is None or not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
        return None
    return Membership.objects.select_related("entity").filter(user=user, entity_id=entity_id).first()


def require_membership(user, entity_id, *, request=None) -> Membership:
    """The user's membership of the entity, read inside it, or 403 — the same answer whether the
    entity exists or not. Entering the entity only narrows what this transaction sees."""
    enter_entity(entity_id, request=request)
    membership = membership_of(user, entity_id)
    if membership is None:
        raise errors.Forbidden("You are not a member of that entity.")
    return membership


def page_entity(request) -> tuple[Entity, list[Membership]]:
    """The entity a browser page shows, and all the user's memberships (for the switcher).

    Named as the API names it (`entityId` in the query string, or `x-entity-id`); else the one
    remembered in the session; else the user's first membership. Remembered in the session.
    `Invalid` (400) for a malformed or disagreeing id, `Forbidden` (403) for an entity the user
    is not a member of. The memberships are in several entities: read under the named bypass,
    whose last statement makes the page's entity the transaction's.
    """
    given = requested_entity_ids(query=request.GET, body=None, meta=request.META)
    named = single_entity_id(given) if given else None
    with bypass_rls("entity switcher: the signed-in user's memberships in every entity") as bypass:
        memberships = list(
            Membership.objects.select_related("entity").filter(user=request.user).order_by("created_at", "id")
        )
        entities = {membership.entity_id: membership.entity for membership in memberships}
        if named is not None:
            entity = entities.get(named)
            if entity is None:
                raise errors.Forbidden("You are not a member of that entity.")
        else:
            try:
                entity = entities.get(uuid.UUID(request.session.get(SESSION_ENTITY_KEY) or ""))
            except ValueError:
                entity = None
            if entity is None:
                if not memberships:
                    raise errors.Forbidden("Your account is not a member of any entity yet.")
                entity = memberships[0].entity
        if bypass.enter_entity_after(entity.pk):
            mark_entered(request, entity.pk)
    remember_page_entity(request, entity.pk)
    return entity, sorted(memberships, key=lambda m: (m.entity.name.lower(), str(m.entity_id)))


def remember_page_entity(request, entity_id) -> None:
    """The entity later pages show when they name none (the switcher, the mailbox callback)."""
    if request.session.get(SESSION_ENTITY_KEY) != str(entity_id):
        request.session[SESSION_ENTITY_KEY] = str(entity_id)


def administered_entity_ids(request) -> set | None:
    """The entities a staff user administers (admin or owner there); None for superusers (all).

    Superusers run the whole service; other staff work in the admin only on the entities where
    they hold the admin or owner role, with the same role rules as the API and the pages. Read
    once per request (under the named bypass: the staff user's memberships are in several
    entities).
    """
    user = request.user
    if user.is_superuser and user.is_active:
        return None
    if not user.is_authenticated:
        return set()  # the admin's sign-in page asks before anyone signed in
    cached = getattr(request, "_administered_entity_ids", None)
    if cached is None:
        with bypass_rls("staff admin: which entities the staff user administers"):
            cached = set(
                Membership.objects.filter(
                    user=user, role__in=[Membership.Role.ADMIN, Membership.Role.OWNER]
                ).values_list("entity_id", flat=True)
            )
        request._administered_entity_ids = cached
    return cached
