"""Entities created before pipeline stages existed get the seven defaults."""

from django.db import migrations


def install_defaults(apps, schema_editor):
    from crm.services.pipeline import DEFAULT_STAGES

    Entity = apps.get_model("axiomatic", "Entity")
    PipelineStage = apps.get_model("crm", "PipelineStage")
    with_stages = PipelineStage.objects.values("entity_id")
    for entity in Entity.objects.exclude(id__in=with_stages).iterator():
        PipelineStage.objects.bulk_create(
            PipelineStage(
                entity=entity,
                name=name,
                kind=kind,
                sort_order=order,
                default_probability_pct=probability,
                system_key=system_key,
                color_key=color,
            )
            for order, (name, kind, probability, system_key, color) in enumerate(DEFAULT_STAGES)
        )


class Migration(migrations.Migration):
    dependencies = [("crm", "0001_initial"), ("axiomatic", "0001_initial")]

    operations = [migrations.RunPython(install_defaults, migrations.RunPython.noop)]
