"""Shared plumbing of the browser pages: which entity a page shows, and switching it.

A page takes its entity from `?entityId=` or from the one remembered in the session (key
`entity_id`); failing both, the user's first membership. The user must be a member: a malformed
id is a 404, an entity the user does not belong to (or that does not exist) a 403, the same
answer either way so a page never tells whether someone else's entity exists.
"""

from __future__ import annotations

import uuid
from functools import wraps
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponseRedirect
from django.views.decorators.http import require_POST

from axiomatic import errors
from axiomatic.access import membership_of, parse_entity_id
from axiomatic.models import Entity, Membership
from axiomatic.rls import bypass_rls
from axiomatic.tenancy import set_transaction_entity

SESSION_ENTITY_KEY = "entity_id"
ENTITY_QUERY_PARAM = "entityId"


def _parse_entity_id(value: str) -> uuid.UUID:
    try:
        return parse_entity_id(str(value))
    except errors.Invalid:
        raise Http404("No such entity.") from None


def _member_entity(user, entity_id: uuid.UUID) -> Entity | None:
    set_transaction_entity(entity_id)  # row-level security: the membership is read inside that entity
    membership = membership_of(user, entity_id)
    return membership.entity if membership else None


def page_entity_resolve(request: HttpRequest) -> tuple[Entity, list[Membership]]:
    """The entity the page shows (membership checked, remembered in the session) and all the
    user's memberships (for the switcher), in one query. They are in several entities: call it
    under the row-level-security bypass, as `entity_page` does."""
    memberships = list(
        Membership.objects.select_related("entity").filter(user=request.user).order_by("created_at", "id")
    )
    entities = {membership.entity_id: membership.entity for membership in memberships}
    given = request.GET.get(ENTITY_QUERY_PARAM)
    if given:
        entity = entities.get(_parse_entity_id(given))
        if entity is None:
            raise PermissionDenied("You are not a member of that entity.")
    else:
        try:
            entity = entities.get(uuid.UUID(request.session.get(SESSION_ENTITY_KEY) or ""))
        except ValueError:
            entity = None
        if entity is None:
            if not memberships:
                raise PermissionDenied("Your account is not a member of any entity yet.")
            entity = memberships[0].entity
    if request.session.get(SESSION_ENTITY_KEY) != str(entity.pk):
        request.session[SESSION_ENTITY_KEY] = str(entity.pk)
    return entity, sorted(memberships, key=lambda m: (m.entity.name.lower(), str(m.entity_id)))


def entity_page(view):
    """Decorator for page views: login required, then `request.entity` and the switcher's data.

    The layout reads `request.entity` and `request.entity_memberships` to draw the switcher.
    """

    @login_required
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        # Row-level security: the switcher lists memberships in every entity (the named bypass);
        # one statement then ends the bypass and makes the page's entity the transaction's.
        with bypass_rls("entity switcher: the signed-in user's memberships in every entity") as bypass:
            request.entity, request.entity_memberships = page_entity_resolve(request)
            bypass.enter_entity_after(request.entity.pk)
        request.membership = next(m for m in request.entity_memberships if m.entity_id == request.entity.pk)
        return view(request, *args, **kwargs)

    return wrapper


def _without_entity_param(url: str) -> str:
    """`next` minus any `entityId`, so the redirect does not switch straight back."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != ENTITY_QUERY_PARAM]
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
    entity = _member_entity(request.user, _parse_entity_id(request.POST.get("entity_id", "")))
    if entity is None:
        raise PermissionDenied("You are not a member of that entity.")
    request.session[SESSION_ENTITY_KEY] = str(entity.pk)
    return HttpResponseRedirect(safe_next(request.POST.get("next")))
