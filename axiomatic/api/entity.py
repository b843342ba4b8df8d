"""Resolving the entity a request names (CONTRACT.md §1, the auth table)."""

from __future__ import annotations

import uuid

from rest_framework import exceptions

from axiomatic.models import Entity, Membership

ENTITY_PARAM = "entityId"
ENTITY_HEADER = "HTTP_X_ENTITY_ID"


def _given_entity_ids(request) -> list[str]:
    values = []
    if ENTITY_PARAM in request.query_params:
        values.extend(request.query_params.getlist(ENTITY_PARAM))
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        data = request.data
        if isinstance(data, dict) and ENTITY_PARAM in data:
            values.append(data[ENTITY_PARAM])
    header = request.META.get(ENTITY_HEADER)
    if header is not None:
        values.append(header)
    return values


def _as_uuid(value) -> uuid.UUID:
    if not isinstance(value, str):
        raise exceptions.ParseError("entityId must be a UUID string.")
    try:
        return uuid.UUID(value.strip())
    except ValueError:
        raise exceptions.ParseError("entityId must be a UUID.") from None


def resolve_entity(request) -> Entity:
    """The entity named by the request, after checking the caller may act in it.

    400: missing, malformed, or given in several places with different values (checked before
    the entity match, so a disagreement is never a 403). 403: another entity than the key's, or a
    session user who is not a member.
    """
    given = _given_entity_ids(request)
    if not given:
        raise exceptions.ParseError("entityId is required (query string, JSON body or x-entity-id).")
    ids = {_as_uuid(value) for value in given}
    if len(ids) > 1:
        raise exceptions.ParseError("entityId is given more than once with different values.")
    entity_id = ids.pop()

    api_key = getattr(request, "auth", None)
    if getattr(api_key, "entity_id", None) is not None:
        if api_key.entity_id != entity_id:
            raise exceptions.PermissionDenied("This API key does not belong to that entity.")
        return api_key.entity
    membership = Membership.objects.select_related("entity").filter(user=request.user, entity_id=entity_id).first()
    if membership is None:
        raise exceptions.PermissionDenied("You are not a member of that entity.")
    return membership.entity
