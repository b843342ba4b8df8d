"""Resolving the entity an API request names, through the one resolver in `axiomatic.access`."""

from __future__ import annotations

from axiomatic import errors
from axiomatic.models import Membership
from axiomatic.tenancy.resolve import ENTITY_PARAM, named_entity_id, require_membership

__all__ = ["ENTITY_PARAM", "resolve_membership"]


def resolve_membership(request) -> Membership:
    """The membership the request acts through, after checking the caller may act in the entity.

    400: entityId missing, malformed, or given in several places with different values (checked
    before the entity match, so a disagreement is never a 403). 403: another entity than the
    key's, or a user who is not a member.
    """
    body = request.data if request.method not in ("GET", "HEAD", "OPTIONS") else None
    entity_id = named_entity_id(query=request.query_params, body=body, meta=request.META)
    api_key = getattr(request, "auth", None)
    key_entity_id = getattr(api_key, "entity_id", None)
    if key_entity_id is not None and key_entity_id != entity_id:
        raise errors.Forbidden("This API key does not belong to that entity.")
    key_membership = getattr(api_key, "membership", None)
    if isinstance(key_membership, Membership):
        return key_membership  # read with the key, in the same query
    # Row-level security: the membership is read inside the entity the request names.
    return require_membership(request.user, entity_id, request=request)
