"""A removed member's keys are revoked, whichever path removed them.

Authentication already refuses a key whose user is no longer a member (401 at once); revoking
as well means a later re-invitation does not bring old keys back to life.
"""

from __future__ import annotations

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from apikeys.models import ApiKey
from apikeys.services import api_keys_revoke_for_member
from axiomatic.models import Membership
from axiomatic.replica import replica_pin_entity
from axiomatic.services import membership_removed


@receiver(membership_removed, dispatch_uid="apikeys-revoke-on-member-removal")
def revoke_keys_of_removed_member(sender, membership: Membership, **kwargs) -> int:
    return api_keys_revoke_for_member(entity_id=membership.entity_id, user_id=membership.user_id)


@receiver(post_delete, sender=Membership, dispatch_uid="apikeys-revoke-on-membership-delete")
def revoke_keys_of_deleted_membership(sender, instance: Membership, **kwargs) -> None:
    # The admin, a cascade or any other path: the same outcome as `remove_member`.
    api_keys_revoke_for_member(entity_id=instance.entity_id, user_id=instance.user_id)


@receiver(post_save, sender=ApiKey, dispatch_uid="apikeys-replica-pin")
def pin_entity_on_key_change(sender, instance: ApiKey, update_fields=None, **kwargs) -> None:
    """A key issued or revoked works (or is refused) on the very next request, also while a
    streaming replica lags: the entity reads the primary until it has replayed (axiomatic.replica).
    The last-use stamp is an UPDATE without signal, so ordinary use pins nothing."""
    replica_pin_entity(instance.entity_id)
