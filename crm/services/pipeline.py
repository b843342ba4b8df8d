"""Pipeline stages: the defaults every entity starts with.

The stage routes (create, reorder, patch, delete with reassignment) add their services here.
"""

from __future__ import annotations

from django.db import transaction

from axiomatic.models import Entity
from crm.choices import StageKind
from crm.models import PipelineStage

DEFAULT_STAGES: tuple[tuple[str, str, int, str, str], ...] = (
    # name, kind, default probability, system key, colour
    ("New", StageKind.OPEN, 10, "new", "slate"),
    ("Contacted", StageKind.OPEN, 20, "contacted", "blue"),
    ("Qualified", StageKind.OPEN, 40, "qualified", "indigo"),
    ("Proposal", StageKind.OPEN, 60, "proposal", "violet"),
    ("Negotiation", StageKind.OPEN, 80, "negotiation", "amber"),
    ("Won", StageKind.WON, 100, "won", "green"),
    ("Lost", StageKind.LOST, 0, "lost", "red"),
)


@transaction.atomic
def stages_install_defaults(*, entity: Entity) -> list[PipelineStage]:
    """Give `entity` the seven default stages, unless it already has stages (idempotent).

    Called for every new entity (post_save of Entity) and by the data migration for entities that
    existed before stages did.
    """
    if PipelineStage.objects.for_entity(entity).exists():
        return []
    return PipelineStage.objects.bulk_create(
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
