"""A removed member's keys are revoked, whichever path removed them.

Authentication already refuses a key whose user is no longer a member (401 at once); revoking
as well means a later re-invitation does not bring old keys back to life.
"""

from __future__ import annotations

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from apikeys.services import api_keys_revoke_for_member
from axiomatic.models import Membership, User
from axiomatic.replica import replica_configured, replica_pin_entity
from axiomatic.rls import bypass_rls
from axiomatic.services import membership_removed


@receiver(membership_removed, dispatch_uid="apikeys-revoke-on-member-removal")
def revoke_keys_of_removed_member(sender, membership: Membership, **kwargs) -> int:
    return api_keys_revoke_for_member(entity_id=membership.entity_id, user_id=membership.user_id)


@receiver(post_delete, sender=Membership, dispatch_uid="apikeys-revoke-on-membership-delete")
def revoke_keys_of_deleted_membership(sender, instance: Membership, **kwargs) -> None:
    # The admin, a cascade or any other path: the same outcome as `remove_member`.
    api_keys_revoke_for_member(entity_id=instance.entity_id, user_id=instance.user_id)


@receiver(post_save, sender=User, dispatch_uid="apikeys-pin-on-user-deactivation")
def pin_entities_of_deactivated_user(sender, instance: User, **kwargs) -> None:
    """A deactivated user's keys are refused on the next request with a streaming replica too:
    their entities read the primary until the replica has replayed the change (axiomatic.replica)."""
    if instance.is_active or not replica_configured():
        return
    with bypass_rls("which entities a deactivated user belongs to"):
        entity_ids = list(Membership.objects.filter(user=instance).values_list("entity_id", flat=True))
    for entity_id in entity_ids:
        replica_pin_entity(entity_id)
