"""Every new entity gets the default pipeline, whichever path created it (command, admin, API)."""

from django.db.models.signals import post_save
from django.dispatch import receiver

from axiomatic.models import Entity
from crm.services.pipeline import stages_install_defaults


@receiver(post_save, sender=Entity, dispatch_uid="crm_entity_default_stages")
def entity_default_stages(sender, instance: Entity, created: bool, raw: bool = False, **kwargs):
    if created and not raw:
        stages_install_defaults(entity=instance)
