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
