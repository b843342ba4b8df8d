"""The pipeline as the board and the stage list show it."""

from __future__ import annotations

from uuid import UUID

from django.db.models import BigIntegerField, Count, OuterRef, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce

from axiomatic.counters import counters_supported
from axiomatic.models import Entity
from crm.models import PipelineFigure, PipelineStage

STAGE_ORDER = ("sort_order", "id")


def stages_in_order(*, entity: Entity | UUID) -> QuerySet[PipelineStage]:
    """The entity's stages in board order."""
    return PipelineStage.objects.for_entity(entity).order_by(*STAGE_ORDER)


def stages_with_lead_counts(*, entity: Entity | UUID) -> QuerySet[PipelineStage]:
    """The entity's stages in board order, each with `lead_count`, in one query.

    On PostgreSQL the counts come from the maintained pipeline figures (a few rows per stage),
    elsewhere from counting the leads.
    """
    if not counters_supported():
        return stages_in_order(entity=entity).annotate(lead_count=Count("leads"))
    figures = (
        PipelineFigure.objects.filter(entity_id=OuterRef("entity_id"), stage_id=OuterRef("pk"))
        .order_by()
        .values("stage_id")
        .annotate(n=Sum("lead_count"))
        .values("n")
    )
    return stages_in_order(entity=entity).annotate(
        lead_count=Coalesce(Subquery(figures, output_field=BigIntegerField()), Value(0))
    )
