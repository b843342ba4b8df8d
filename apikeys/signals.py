"""A removed member's keys are revoked, whichever path removed them.

Authentication already refuses a key whose user is no longer a member (401 at once); revoking
as well means a later re-invitation does not bring old keys back to life.
"""

from __future__ import annotations

from django.db.models.signals import post_delete
from django.dispatch import receiver

from apikeys.services import api_keys_revoke_for_member
from axiomatic.models import Membership
from axiomatic.services import membership_removed


@receiver(membership_removed, dispatch_uid="apikeys-revoke-on-member-removal")
def revoke_keys_of_removed_member(sender, membership: Membership, **kwargs) -> int:
    return api_keys_revoke_for_member(entity_id=membership.entity_id, user_id=membership.user_id)


@receiver(post_delete, sender=Membership, dispatch_uid="apikeys-revoke-on-membership-delete")
def revoke_keys_of_deleted_membership(sender, instance: Membership, **kwargs) -> None:
    # The admin, a cascade or any other path: the same outcome as `remove_member`.
    api_keys_revoke_for_member(entity_id=instance.entity_id, user_id=instance.user_id)
