from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models.functions import Lower

from axiomatic.tenancy import TenantModel
from crm.choices import ColorKey, StageKind


class PipelineStage(TenantModel):
    """A column of the entity's sales pipeline.

    `kind` says what reaching the stage means (still open, won, lost); `system_key` marks the
    stages every entity starts with, so integrations can find "won" even after a rename.
    `sort_order` is dense and unique per entity; the reorder service rewrites it atomically.
    """

    name = models.CharField(max_length=60)
    kind = models.CharField(max_length=10, choices=StageKind.choices, default=StageKind.OPEN)
    sort_order = models.PositiveIntegerField()
    default_probability_pct = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(0), MaxValueValidator(100)]
    )
    color_key = models.CharField(max_length=10, choices=ColorKey.choices, default=ColorKey.SLATE)
    system_key = models.CharField(max_length=30, null=True, blank=True, editable=False)

    class Meta:
        ordering = ["sort_order", "id"]
        constraints = [
            models.UniqueConstraint(Lower("name"), "entity", name="stage_entity_name_ci_uniq"),
            models.UniqueConstraint(fields=["entity", "sort_order"], name="stage_entity_order_uniq"),
            models.UniqueConstraint(
                fields=["entity", "system_key"],
                condition=models.Q(system_key__isnull=False),
                name="stage_entity_system_key_uniq",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class PipelineFigure(models.Model):
    """The pipeline's figures per (stage, currency, owner), maintained as leads are written.

    `GET /pipeline-stages` (lead counts), the board's column totals and the dashboard read these
    few rows instead of aggregating every lead: a PostgreSQL statement trigger on the leads table
    adds the new rows' figures and subtracts the old ones in the same transaction as the write (see
    migration `0006`), so the figures are exact for every reader. Weighted values are rounded to
    cents per lead, as each lead shows its own. SQLite (the demo) aggregates the leads instead.
    """

    id = models.BigAutoField(primary_key=True)
    entity = models.ForeignKey("axiomatic.Entity", on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    # No database constraints: rows follow the leads through the trigger, not the other way round.
    stage = models.ForeignKey(PipelineStage, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+")
    currency = models.CharField(max_length=3)
    owner_id = models.UUIDField(null=True)
    lead_count = models.BigIntegerField(default=0)
    valued_count = models.BigIntegerField(default=0)  # leads with a value (money figures list currencies with one)
    value_sum = models.DecimalField(max_digits=20, decimal_places=2, default=0)
    weighted_sum = models.DecimalField(max_digits=20, decimal_places=2, default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["entity", "stage", "currency", "owner_id"],
                name="pipeline_figure_uniq",
                nulls_distinct=False,
            )
        ]

    def __str__(self) -> str:
        return f"{self.stage_id}/{self.currency}/{self.owner_id}: {self.lead_count}"
