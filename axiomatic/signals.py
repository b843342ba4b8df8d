"""Core signal receivers."""

from __future__ import annotations

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from axiomatic.models import Change, Entity, EntityCounter, Membership, User
from axiomatic.replica import replica_configured, replica_pin_entity
from axiomatic.rls import bypass_rls


@receiver(post_delete, sender=Entity, dispatch_uid="axiomatic-drop-entity-counters")
def drop_entity_counters(sender, instance: Entity, **kwargs) -> None:
    """A deleted entity's counters go last: its rows' delete triggers may have written them. Its
    change feed goes with it (no foreign key: `axiomatic.models_changes`)."""
    Change.objects.filter(entity_id=instance.pk).delete()
    EntityCounter.objects.filter(entity_id=instance.pk).delete()


@receiver(post_save, sender=Membership, dispatch_uid="axiomatic-replica-pin-membership-saved")
@receiver(post_delete, sender=Membership, dispatch_uid="axiomatic-replica-pin-membership-deleted")
def pin_entity_on_membership_change(sender, instance: Membership, **kwargs) -> None:
    """A member added, removed or given another role acts so on the very next request, also while
    a streaming replica lags: the entity reads the primary until it has replayed (axiomatic.replica)."""
    replica_pin_entity(instance.entity_id)


@receiver(post_save, sender=User, dispatch_uid="axiomatic-replica-pin-user-deactivated")
def pin_entities_of_deactivated_user(sender, instance: User, **kwargs) -> None:
    """A deactivated user's keys and sessions are refused on the very next request, replica or not."""
    if instance.is_active or not replica_configured():
        return
    with bypass_rls("which entities a deactivated user belongs to"):
        entity_ids = list(Membership.objects.filter(user=instance).values_list("entity_id", flat=True))
    for entity_id in entity_ids:
        replica_pin_entity(entity_id)
