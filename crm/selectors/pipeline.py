"""The pipeline as the board and the stage list show it."""

from __future__ import annotations

from uuid import UUID

from django.db.models import Count, QuerySet

from axiomatic.models import Entity
from crm.models import PipelineStage

STAGE_ORDER = ("sort_order", "id")


def stages_in_order(*, entity: Entity | UUID) -> QuerySet[PipelineStage]:
    """The entity's stages in board order."""
    return PipelineStage.objects.for_entity(entity).order_by(*STAGE_ORDER)


def stages_with_lead_counts(*, entity: Entity | UUID) -> QuerySet[PipelineStage]:
    """The entity's stages in board order, each with `lead_count`, in one aggregate query."""
    return stages_in_order(entity=entity).annotate(lead_count=Count("leads"))
