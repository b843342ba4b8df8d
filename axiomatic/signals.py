"""Core signal receivers."""

from __future__ import annotations

from django.db.models.signals import post_delete
from django.dispatch import receiver

from axiomatic.models import Change, Entity, EntityCounter


@receiver(post_delete, sender=Entity, dispatch_uid="axiomatic-drop-entity-counters")
def drop_entity_counters(sender, instance: Entity, **kwargs) -> None:
    """A deleted entity's counters go last: its rows' delete triggers may have written them. Its
    change feed goes with it (no foreign key: `axiomatic.models_changes`)."""
    Change.objects.filter(entity_id=instance.pk).delete()
    EntityCounter.objects.filter(entity_id=instance.pk).delete()
