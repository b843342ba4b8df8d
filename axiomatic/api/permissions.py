"""Permission classes applied by the base viewset, in the order of the contract's auth table."""

from __future__ import annotations

from rest_framework import exceptions, permissions

from axiomatic.api.entity import resolve_membership
from axiomatic.roles import MEMBER, require_role
from axiomatic.tenancy.database import enter_entity


class IsAuthenticated(permissions.BasePermission):
    """401 before anything else (with `WWW-Authenticate: Bearer`)."""

    def has_permission(self, request, view) -> bool:
        if request.user is None or not request.user.is_authenticated:
            raise exceptions.NotAuthenticated()
        return True


class HasEntity(permissions.BasePermission):
    """Resolves `request.membership` and `request.entity` (400/403) and tells the database
    transaction about the entity."""

    def has_permission(self, request, view) -> bool:
        request.membership = resolve_membership(request)
        request.entity = request.membership.entity
        enter_entity(request.entity.pk, request=request)  # no query if the authentication already did
        return True


class HasScope(permissions.BasePermission):
    """`read:<family>` for safe methods, `write:<family>` otherwise; sessions act as members."""

    def has_permission(self, request, view) -> bool:
        api_key = getattr(request, "auth", None)
        if not hasattr(api_key, "has_scope"):
            return True  # browser session: the member may use the UI's API
        needed = f"{'read' if request.method in permissions.SAFE_METHODS else 'write'}:{view.scope_family}"
        if not api_key.has_scope(needed):
            raise exceptions.PermissionDenied(f"This API key lacks the {needed} scope.")
        return True


class HasRole(permissions.BasePermission):
    """The role the view declares for the action (`action_roles`), read from the current membership.

    Checked after the scope, so a key never acts beyond its scopes nor beyond its user's role.
    """

    def has_permission(self, request, view) -> bool:
        needed = view.action_roles.get(getattr(view, "action", None) or "", MEMBER)
        require_role(request.membership, needed)
        return True
