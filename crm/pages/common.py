"""Small pieces shared by the sales pages: cursors in URLs, the owner filter, members, URLs."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from django.core.exceptions import PermissionDenied

from axiomatic import errors
from axiomatic.models import Entity, User
from axiomatic.roles import ADMIN, require_role
from crm.selectors.owners import UNASSIGNED, OwnerSelector

MEMBER_LIMIT = 500  # the owner / assignee pickers list at most this many members


# --- cursors --------------------------------------------------------------------------------------


def _plain(value) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value)


def cursor_encode(values: tuple | None) -> str:
    """A keyset cursor as an opaque URL-safe token ("" for none)."""
    if values is None:
        return ""
    raw = json.dumps([_plain(value) for value in values], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def cursor_decode(token: str, kinds: Sequence[Callable[[str], object]]) -> tuple | None:
    """The cursor's values converted by `kinds` (one per column); None when absent or malformed
    (a damaged link starts the list from the beginning rather than failing)."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        values = json.loads(raw)
        if not isinstance(values, list) or len(values) != len(kinds):
            return None
        converted = tuple(kind(value) for kind, value in zip(kinds, values, strict=True))
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        return None
    if any(isinstance(value, str) and "\x00" in value for value in converted):
        return None
    return converted


def aware_datetime(value: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("A cursor instant needs its offset.")
    return parsed


def text(value: str) -> str:
    if not isinstance(value, str):
        raise TypeError("Expected text.")
    return value


# --- members and the owner filter -------------------------------------------------------------------


def entity_members(entity: Entity) -> list[User]:
    """The entity's members by name, for owner and assignee pickers (one query, bounded)."""
    return list(User.objects.filter(memberships__entity=entity).order_by("name", "email", "id")[:MEMBER_LIMIT])


@dataclass(frozen=True)
class OwnerFilter:
    """`owner` of a page's query string: "" (everyone), "me", "unassigned" or a member's id."""

    value: str
    selector: OwnerSelector

    @classmethod
    def parse(cls, raw: str | None, *, user: User, members: list[User]) -> OwnerFilter | None:
        """The filter named by `raw`; None for a value that names nobody (not a member, garbage)."""
        raw = (raw or "").strip()
        if raw == "":
            return cls("", None)
        if raw == "me":
            return cls("me", user.pk)
        if raw == UNASSIGNED:
            return cls(UNASSIGNED, UNASSIGNED)
        try:
            member_id = uuid.UUID(raw)
        except ValueError:
            return None
        if member_id == user.pk:
            return cls("me", user.pk)
        if any(member.pk == member_id for member in members):
            return cls(str(member_id), member_id)
        return None


def require_admin(request, *, doing: str) -> None:
    """403 (the role rule's sentence) unless the current membership is admin or owner."""
    try:
        require_role(request.membership, ADMIN, doing=doing)
    except errors.Forbidden as refusal:
        raise PermissionDenied(refusal.message) from None


# --- URLs -------------------------------------------------------------------------------------------


def with_query(path: str, request, **params) -> str:
    """`path?entityId=...&...` with the non-empty `params` (the pages always name their entity)."""
    query = {"entityId": str(request.entity.pk)}
    query.update({key: value for key, value in params.items() if value not in (None, "")})
    return f"{path}?{urlencode(query)}"
