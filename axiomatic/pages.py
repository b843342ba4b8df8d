"""Shared plumbing of the browser pages: which entity a page shows, and switching it.

The entity is resolved by the one resolver (`axiomatic.tenancy.resolve.page_entity`): named in
the query string (`?entityId=`) or `x-entity-id` as in the API, else the one remembered in the
session, else the user's first membership. Its refusals carry the API's statuses: a malformed id
is a 400, an entity the user does not belong to (or that does not exist) a 403 — the same answer
either way, so a page never tells whether someone else's entity exists.
"""

from __future__ import annotations

from functools import wraps
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.contrib.auth.decorators import login_required
from django.core.exceptions import BadRequest, PermissionDenied
from django.http import HttpRequest, HttpResponseRedirect
from django.views.decorators.http import require_POST

from axiomatic import errors
from axiomatic.tenancy.resolve import (
    ENTITY_PARAM,
    SESSION_ENTITY_KEY,
    page_entity,
    parse_entity_id,
    remember_page_entity,
    require_membership,
)

__all__ = ["ENTITY_PARAM", "SESSION_ENTITY_KEY", "entity_page", "entity_switch", "safe_next"]


def _translated(call, *args, **kwargs):
    """The resolver's refusals as the pages answer them: 400 and 403."""
    try:
        return call(*args, **kwargs)
    except errors.Invalid as error:
        raise BadRequest(error.message) from None
    except errors.Forbidden as error:
        raise PermissionDenied(error.message) from None


def entity_page(view):
    """Decorator for page views: login required, then `request.entity` and the switcher's data.

    The layout reads `request.entity` and `request.entity_memberships` to draw the switcher.
    """

    @login_required
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        request.entity, request.entity_memberships = _translated(page_entity, request)
        request.membership = next(m for m in request.entity_memberships if m.entity_id == request.entity.pk)
        return view(request, *args, **kwargs)

    return wrapper


def _without_entity_param(url: str) -> str:
    """`next` minus any `entityId`, so the redirect does not switch straight back."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != ENTITY_PARAM]
    return urlunsplit(("", "", parts.path or "/", urlencode(query), ""))


def _is_local_path(url: str) -> bool:
    """A path on this site: one leading "/" (never "//" or "/\\", which browsers read as another
    host), no backslash, whitespace or control character anywhere (browsers drop or rewrite them)."""
    return (
        url.startswith("/")
        and not url.startswith(("//", "/\\"))
        and not any(ch == "\\" or ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url)
    )


DEFAULT_NEXT = "/crm/board"


def safe_next(value: str | None) -> str:
    """`next` for the switcher's redirect: a local path without `entityId`, else the board."""
    if not value or not _is_local_path(value):
        return DEFAULT_NEXT
    target = _without_entity_param(value)
    return target if _is_local_path(target) else DEFAULT_NEXT


@require_POST
@login_required
def entity_switch(request: HttpRequest):
    """POST `entity_id` (+ `next`): remember another entity the user belongs to, then go back."""
    entity_id = _translated(parse_entity_id, request.POST.get("entity_id", ""))
    membership = _translated(require_membership, request.user, entity_id, request=request)
    remember_page_entity(request, membership.entity_id)
    return HttpResponseRedirect(safe_next(request.POST.get("next")))
