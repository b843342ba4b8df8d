"""Writes with rules for the core models: creating entities, users and memberships.

The operator commands, the admin and the demo seeding all come through here so that a new entity
always gets its owner membership and (through the `entity_created` signal handled by the CRM app)
its default pipeline stages.
"""

from __future__ import annotations

from django.db import transaction
from django.dispatch import Signal

from axiomatic import errors
from axiomatic.models import Entity, Membership, User


def user_get_or_create(*, email: str, name: str = "", password: str | None = None) -> User:
    """Find a user by email (case-insensitively) or create one."""
    email = email.strip().lower()
    user = User.objects.filter(email__iexact=email).first()
    if user is None:
        user = User.objects.create_user(email=email, password=password, name=name)
    else:
        changed = []
        if name and user.name != name:
            user.name = name
            changed.append("name")
        if password:
            user.set_password(password)
            changed.append("password")
        if changed:
            user.save(update_fields=changed)
    return user


def membership_ensure(*, user: User, entity: Entity, role: str = Membership.Role.MEMBER) -> Membership:
    """Make `user` a member of `entity` with `role` (updating the role if already a member)."""
    membership, created = Membership.objects.get_or_create(user=user, entity=entity, defaults={"role": role})
    if not created and membership.role != role:
        membership.role = role
        membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def entity_create(
    *,
    name: str,
    owner: User | None = None,
    currency: str = "USD",
    time_zone: str = "UTC",
) -> Entity:
    """Create an entity (with its owner's membership); default stages follow via post_save."""
    entity = Entity(name=name.strip(), default_currency=currency.upper(), time_zone=time_zone)
    entity.full_clean()
    entity.save()
    if owner is not None:
        membership_ensure(user=owner, entity=entity, role=Membership.Role.OWNER)
    return entity


def entity_owner(entity: Entity) -> User | None:
    """The entity's first owner (falling back to its first admin), for keys made without a user."""
    for role in (Membership.Role.OWNER, Membership.Role.ADMIN):
        membership = (
            Membership.objects.filter(entity=entity, role=role)
            .select_related("user")
            .order_by("created_at", "id")
            .first()
        )
        if membership:
            return membership.user
    return None


# --- roles and removal ---------------------------------------------------------------------------

# Sent (with `membership`) just before a membership is deleted by `membership_remove`; receivers
# return how many things they withdrew (the API keys app revokes the user's keys of the entity).
membership_removed = Signal()


def _ensure_an_owner_remains(membership: Membership) -> None:
    others = Membership.objects.filter(entity_id=membership.entity_id, role=Membership.Role.OWNER).exclude(
        pk=membership.pk
    )
    if membership.role == Membership.Role.OWNER and not others.exists():
        raise errors.Conflict("The entity must keep at least one owner; make someone else owner first.")


@transaction.atomic
def membership_set_role(*, entity: Entity, user: User, role: str) -> Membership:
    """Change a member's role; the last owner cannot step down (409). Takes effect on the next
    request of every session and key of the user, because roles are read on every request."""
    membership = Membership.objects.select_for_update().filter(entity=entity, user=user).first()
    if membership is None:
        raise errors.NotFound(f"{user.email} is not a member of {entity.name}.")
    if role != membership.role:
        if role != Membership.Role.OWNER:
            _ensure_an_owner_remains(membership)
        membership.role = role
        membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def membership_remove(*, entity: Entity, user: User) -> int:
    """Remove a user from an entity and withdraw what they held there; returns the number of API
    keys revoked. The last owner cannot be removed (409)."""
    membership = Membership.objects.select_for_update().filter(entity=entity, user=user).first()
    if membership is None:
        raise errors.NotFound(f"{user.email} is not a member of {entity.name}.")
    _ensure_an_owner_remains(membership)
    withdrawn = membership_removed.send(sender=Membership, membership=membership)
    membership.delete()
    return sum(count for _receiver, count in withdrawn if isinstance(count, int))
