"""Roles in an entity and what each may do: `member` < `admin` < `owner`.

Members read everything and work the CRM's records; admins also configure the entity (pipeline
stages, shared mailboxes, webhooks, every API key); owners are admins who may change roles. A
request always acts with its user's *current* membership (read on every request), so a role
change or removal takes effect at once, for sessions and API keys alike.
"""

from __future__ import annotations

from axiomatic import errors
from axiomatic.models import Membership

MEMBER = Membership.Role.MEMBER
ADMIN = Membership.Role.ADMIN
OWNER = Membership.Role.OWNER

_RANK = {MEMBER: 0, ADMIN: 1, OWNER: 2}


def role_at_least(role: str, needed: str) -> bool:
    """Whether `role` includes the rights of `needed`."""
    return _RANK.get(role, -1) >= _RANK[needed]


def is_admin(membership: Membership | None) -> bool:
    """Admins and owners configure the entity."""
    return membership is not None and role_at_least(membership.role, ADMIN)


def require_role(membership: Membership, needed: str, *, doing: str | None = None) -> None:
    """Refuse (403) unless the membership's role includes `needed`; the message names the role."""
    if role_at_least(membership.role, needed):
        return
    what = f" to {doing}" if doing else ""
    raise errors.Forbidden(f"You need the {needed} role{what}; your role in this entity is {membership.role}.")
