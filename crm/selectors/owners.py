"""The owner filter shared by lists, the dashboard and the board: a user, nobody, or everyone."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from django.db.models import Q

UNASSIGNED = "unassigned"
OwnerSelector = UUID | Literal["unassigned"] | None


def owner_q(owner: OwnerSelector, field: str) -> Q:
    """Rows owned by `owner` through `field`: everyone for None, no owner for `unassigned`."""
    if owner is None:
        return Q()
    if owner == UNASSIGNED:
        return Q(**{f"{field}__isnull": True})
    return Q(**{f"{field}_id": owner})
